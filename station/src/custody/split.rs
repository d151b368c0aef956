//! Split knowledge: a 32-byte key divided among officers so that any `threshold` of them
//! together rebuild it and fewer learn nothing about it. Shamir's scheme over GF(2^8) (the AES
//! field, x^8 + x^4 + x^3 + x + 1), byte by byte, from the `vsss-rs` crate (6.0.1, after the
//! audit fixes of 5.4.0); each share then sealed under its holder's passphrase.
//!
//! A share is 33 bytes: its x-coordinate (1..=255), then the 32 values. Nothing in a share says
//! how many are needed, and a wrong or mixed share rebuilds a wrong key without an error, so the
//! split keeps its threshold and a check value of the key, and every rebuild is checked against
//! both. Each sealed share is bound (associated data) to its split, its holder, its x and the
//! threshold, so that it cannot be moved to another split or holder.

use crate::seal::{self, KeyCheckValue, SealError, SealedMasterKey};
use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

const SHARE_LEN: usize = 33;
const CHECK_LABEL: &[u8] = b"keyfill split key check v1";
/// Officers a key may be split among; the field allows 255.
pub const MAX_HOLDERS: usize = 32;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error("a split needs a threshold of at least 2 and at most the number of holders ({holders}), not {threshold}")]
    Threshold { threshold: usize, holders: usize },
    #[error("a key is split among at most {MAX_HOLDERS} holders, not {0}")]
    TooManyHolders(usize),
    #[error("{0:?} holds two shares of the split: each holder holds one")]
    DuplicateHolder(String),
    #[error("{need} holders must come together to rebuild this key; {have} did")]
    TooFewHolders { have: usize, need: usize },
    #[error("{0:?} holds no share of this split")]
    NotAHolder(String),
    #[error("the share of {holder:?} does not open: {source}")]
    Share { holder: String, source: SealError },
    #[error(
        "the shares rebuilt a key that is not the split's (its check value differs): a share was altered or \
         belongs to another split"
    )]
    WrongKey,
    #[error("the secret-sharing library refused: {0}")]
    Library(String),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// One holder's share, sealed under the holder's passphrase.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldShare {
    pub holder: String,
    pub x: u8,
    pub sealed: SealedMasterKey,
}

/// A key split among holders.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitKey {
    /// Names this split in every share's associated data.
    pub split_id: String,
    pub threshold: u8,
    /// The key's check value (HMAC-SHA-256 under a label of its own, 16 bytes).
    pub check: String,
    pub shares: Vec<HeldShare>,
}

fn share_aad(split_id: &str, holder: &str, x: u8, threshold: u8) -> Vec<u8> {
    let mut aad = b"keyfill key share v1\0".to_vec();
    for field in [split_id.as_bytes(), holder.as_bytes()] {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad.extend_from_slice(&[x, threshold]);
    aad
}

fn check_of(key: &SecretKey) -> KeyCheckValue {
    seal::check_value_with_label(key, CHECK_LABEL)
}

/// The raw split: `holders` shares of 33 bytes, any `threshold` of which rebuild `key`.
pub(crate) fn shares_of(
    key: &SecretKey,
    threshold: usize,
    holders: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, SplitError> {
    let rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
    let shares = vsss_rs::Gf256::split_bytes(threshold, holders, key.expose(), rng)
        .map_err(|error| SplitError::Library(format!("{error:?}")))?;
    Ok(shares.into_iter().map(Zeroizing::new).collect())
}

/// Rebuilds the key from raw shares (no threshold or check: the callers' job).
pub(crate) fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<SecretKey, SplitError> {
    if shares.iter().any(|share| share.len() != SHARE_LEN) {
        return Err(SplitError::WrongKey);
    }
    let copies: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(shares.iter().map(|share| share.to_vec()).collect());
    let key = Zeroizing::new(
        vsss_rs::Gf256::combine_bytes(&*copies).map_err(|error| SplitError::Library(format!("{error:?}")))?,
    );
    SecretKey::from_slice(&key).ok_or(SplitError::WrongKey)
}

impl SplitKey {
    /// Splits `key` among `holders` (name and passphrase each), any `threshold` of whom rebuild
    /// it. Each share is sealed under its holder's passphrase.
    pub fn new(key: &SecretKey, threshold: usize, holders: &[(&str, &str)]) -> Result<Self, SplitError> {
        if holders.len() > MAX_HOLDERS {
            return Err(SplitError::TooManyHolders(holders.len()));
        }
        if threshold < 2 || threshold > holders.len() {
            return Err(SplitError::Threshold { threshold, holders: holders.len() });
        }
        for (index, (name, _)) in holders.iter().enumerate() {
            if holders[..index].iter().any(|(other, _)| other == name) {
                return Err(SplitError::DuplicateHolder((*name).to_owned()));
            }
        }
        let split_id = hex::encode(seal::random_array::<16>()?);
        let raw = shares_of(key, threshold, holders.len())?;
        let threshold = threshold as u8;
        let mut shares = Vec::with_capacity(holders.len());
        for ((holder, passphrase), share) in holders.iter().zip(&raw) {
            let x = share[0];
            let sealed =
                seal::seal_secret_under_passphrase(share, passphrase, &share_aad(&split_id, holder, x, threshold))?;
            shares.push(HeldShare { holder: (*holder).to_owned(), x, sealed });
        }
        Ok(SplitKey { split_id, threshold, check: check_of(key).to_hex(), shares })
    }

    /// Rebuilds the key from the shares of `present` holders (name and passphrase each): at
    /// least the threshold of them, each opening their own share; the result is checked against
    /// the split's check value.
    pub fn rebuild(&self, present: &[(&str, &str)]) -> Result<SecretKey, SplitError> {
        let mut distinct: Vec<&str> = present.iter().map(|(name, _)| *name).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < usize::from(self.threshold) || distinct.len() != present.len() {
            return Err(SplitError::TooFewHolders { have: distinct.len(), need: usize::from(self.threshold) });
        }
        let mut raw = Vec::with_capacity(present.len());
        for (holder, passphrase) in present {
            let share = self
                .shares
                .iter()
                .find(|share| share.holder == *holder)
                .ok_or_else(|| SplitError::NotAHolder((*holder).to_owned()))?;
            let aad = share_aad(&self.split_id, &share.holder, share.x, self.threshold);
            let opened = seal::open_secret_under_passphrase(&share.sealed, passphrase, &aad)
                .map_err(|source| SplitError::Share { holder: share.holder.clone(), source })?;
            if opened.first() != Some(&share.x) {
                return Err(SplitError::WrongKey);
            }
            raw.push(opened);
        }
        let key = combine(&raw)?;
        if Some(check_of(&key)) != KeyCheckValue::from_hex(&self.check) {
            return Err(SplitError::WrongKey);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(hex::decode(text).expect("hex"))
    }

    /// Shares computed by an independent implementation (Python, from the textbook GF(2^8)
    /// arithmetic with the AES polynomial and fixed coefficients; also reconstructed with the
    /// `galois` package and a port of HashiCorp Vault's `shamir`): the library rebuilds their
    /// secrets from every subset of the threshold.
    #[test]
    fn custody_shamir_rebuilds_an_independent_implementations_shares() {
        let cases: [(&str, usize, &[&str]); 3] = [
            (
                "a6e704ea2e7eda15db3aefab955d9074cda191325ffcd69f8842a15369a12e11",
                2,
                &[
                    "018af2ce86d1c1cfe8a1b48210c6a753433ecfa5e7d95dd7e34f97eb232cb3f1f8",
                    "02fecd8b32cb1bf0f42f3d35c633b20d1a307df98348a5d4671df335b3e3858bd8",
                    "03d2d8415e34a4e50955b3587d6048ce2dc313cd56ce04d51bda267fc3a6975431",
                ],
            ),
            (
                "d5b7e47cdd5ce5d50cbd1c832a45d1906996ab1815513a818d4b33d8272efdb8",
                3,
                &[
                    "013281ffa8a274d95dfd90fb504859458ace38c47a145984ced743167a2bde27d8",
                    "0292b69f24a8e74b3c72754ddba1ae6ee604df54f1df448e0b6655f96049a39927",
                    "03758084f0d7cf77b48358aa08c3b2fafca3713b93de4c30443c5ddcc245534347",
                    "04251a3d4d2db0d7b9da48988a00e9b26f533cca65976f28de274f8a0238ec34fa",
                    "05c22c26995298eb312b657f5962f52675f492a507966796917d47afa0341cee9a",
                ],
            ),
            (
                "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                2,
                &[
                    "076f634e07f1e806c76bb20dc16c6dddf3013bf0b47a1928ec5bb465d828bffee9",
                    "802fbff74249744db739ffc1aab7b61cd9fc1bf7d3b4403e4179c81d212558fed8",
                    "ff5e6ecb1a2fd434a42b41c766fbfad53ec2ae6a8a065a2ed9784ee86ceae3fee0",
                ],
            ),
        ];
        for (secret, threshold, shares) in cases {
            let shares: Vec<_> = shares.iter().map(|share| bytes(share)).collect();
            for first in 0..shares.len() {
                for second in first + 1..shares.len() {
                    let mut subset = vec![shares[first].clone(), shares[second].clone()];
                    if threshold == 3 {
                        let third = (second + 1) % shares.len();
                        if third == first || third == second {
                            continue;
                        }
                        subset.push(shares[third].clone());
                    }
                    let key = combine(&subset).expect("combines");
                    assert_eq!(hex::encode(key.expose()), secret, "shares {first}, {second}");
                }
            }
        }
    }

    /// The library's own split, recomputed byte by byte by the independent implementation
    /// (fixed coefficients 00…, ff… for the first two bytes): what it wrote for x = 1, 2, 3.
    #[test]
    fn custody_shamir_known_answer_shares_rebuild_their_secret() {
        let secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let shares = [
            "0100fec6a6d612b8ab8833f1b3172bd81fbd51e020338c2d2787d00e72c019b99e",
            "0200e49152bb2b6144137de7603a41b92f5191ed755a3c60773d9032c9bf154b06",
            "03001b55f7693cdfe893471cd821676f3ffcd11f467da55b47a25926a06311ec87",
        ];
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let subset: Vec<_> = pair.iter().map(|&i| bytes(shares[i])).collect();
            assert_eq!(hex::encode(combine(&subset).expect("combines").expose()), secret);
        }
    }

    #[test]
    fn custody_a_split_key_needs_its_threshold_of_holders_each_with_their_own_passphrase() {
        let key = SecretKey::from_bytes([0x5a; 32]);
        let holders = [("alice", "alice's words"), ("bob", "bob's words"), ("carol", "carol's words")];
        let split = SplitKey::new(&key, 2, &holders).expect("splits");
        for pair in [[0, 1], [0, 2], [1, 2]] {
            let present: Vec<_> = pair.iter().map(|&i| holders[i]).collect();
            assert_eq!(split.rebuild(&present).expect("rebuilds").expose(), key.expose());
        }
        // One officer alone, or the same officer twice, is not two.
        assert!(matches!(split.rebuild(&holders[..1]), Err(SplitError::TooFewHolders { have: 1, need: 2 })));
        assert!(matches!(
            split.rebuild(&[holders[0], holders[0]]),
            Err(SplitError::TooFewHolders { have: 1, need: 2 })
        ));
        // A wrong passphrase names its holder; a stranger holds nothing.
        let wrong = split.rebuild(&[holders[0], ("bob", "not bob's")]);
        assert!(matches!(&wrong, Err(SplitError::Share { holder, .. }) if holder == "bob"), "{wrong:?}");
        assert!(matches!(split.rebuild(&[holders[0], ("mallory", "x")]), Err(SplitError::NotAHolder(_))));
        // A share moved to another holder does not open under that holder's name.
        let mut moved = split.clone();
        moved.shares[1].sealed = split.shares[2].sealed.clone();
        moved.shares[1].x = split.shares[2].x;
        assert!(moved.rebuild(&[holders[0], ("bob", "carol's words")]).is_err());
        // A share of another split of the same key does not mix in.
        let other = SplitKey::new(&key, 2, &holders).expect("splits");
        let mut mixed = split.clone();
        mixed.shares[1] = other.shares[1].clone();
        assert!(mixed.rebuild(&holders[..2]).is_err());
        // Bad splits are refused.
        assert!(matches!(SplitKey::new(&key, 1, &holders), Err(SplitError::Threshold { .. })));
        assert!(matches!(SplitKey::new(&key, 4, &holders), Err(SplitError::Threshold { .. })));
        assert!(matches!(SplitKey::new(&key, 2, &[("a", "1"), ("a", "2")]), Err(SplitError::DuplicateHolder(_))));
    }
}
