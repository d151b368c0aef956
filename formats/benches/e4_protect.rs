//! E4 message protection throughput, one core: `protect` and `unprotect` (AES-SIV with the
//! timestamp as associated data) of 100-byte and 1 KiB messages, as a device or C2 does for
//! every message.
//!
//! ```sh
//! cargo bench -p keyfill-formats --bench e4_protect
//! ```
//! The anchor, measured on this machine kind with the independent C implementation of E4
//! (portable C AES-SIV), one core: about 190–230k messages/s at 100 B and 35–44k at 1 KiB.
//! Each figure is the median of 7 rounds of at least 0.5 s each.

use keyfill_formats::SecretKey;
use keyfill_formats::e4::{TimestampPolicy, protect, unprotect};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(500);
const TIMESTAMP: u64 = 1_700_000_000;

/// Messages per second over one round of at least [`ROUND_TIME`].
fn round(mut operation: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < ROUND_TIME {
        for _ in 0..256 {
            operation();
        }
        done += 256;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn median(mut operation: impl FnMut()) -> f64 {
    round(&mut operation); // warm-up
    let mut rates: Vec<f64> = (0..ROUNDS).map(|_| round(&mut operation)).collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

fn main() -> ExitCode {
    let key = SecretKey::from_bytes([0x4b; 32]);
    println!("E4 protect/unprotect, one core, median of {ROUNDS} rounds (anchor: portable C E4)");
    for (size, anchor) in [(100usize, "190–230k"), (1024, "35–44k")] {
        let plaintext = vec![0x5au8; size];
        let protected = match protect(&key, TIMESTAMP, &plaintext) {
            Ok(protected) => protected,
            Err(error) => {
                eprintln!("protect failed: {error}");
                return ExitCode::FAILURE;
            }
        };
        let protecting = median(|| {
            let _ = black_box(protect(black_box(&key), TIMESTAMP, black_box(&plaintext)));
        });
        let unprotecting = median(|| {
            let _ = black_box(unprotect(black_box(&key), black_box(&protected), TIMESTAMP, TimestampPolicy::ANY));
        });
        println!(
            "  {size:>5} B: protect {:>7.1}k msg/s, unprotect {:>7.1}k msg/s (anchor {anchor} msg/s)",
            protecting / 1000.0,
            unprotecting / 1000.0
        );
    }
    ExitCode::SUCCESS
}
