//! The screenshots of docs/operator-guide.md: a tour of every screen against the fake station
//! with sample data, driven through the accessibility tree like the other tests, drawn by a
//! CPU rasterizer (no GPU, no display). Ignored in CI: `scripts/screenshots` runs it and writes
//! docs/images/gui-*.png (or the folder in KEYFILL_SCREENSHOTS).

mod software_renderer;

use eframe::egui::accesskit::Role;
use eframe::egui::{Color32, Key};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_formats::qr::OnboardingPayload;
use keyfill_gui::KeyfillApp;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::problem::Problem;
use keyfill_gui::screens::Screen;
use keyfill_gui::settings::Settings;
use keyfill_gui::station_handle::fake::{FakeControl, demo_state};
use keyfill_station::label::{LabelContent, LabelSpec, render_png};
use keyfill_station::protocol::SessionError;
use keyfill_station::provision::ProvisionError;
use keyfill_station::scan::source::ImageFiles;
use software_renderer::{SoftwareRenderer, Textures};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "demo";
/// The window the screenshots show, and the smallest one the app supports.
const SIZE: [f32; 2] = [1280.0, 800.0];
const SMALL: [f32; 2] = [1024.0, 600.0];
const MARGIN: f32 = 8.0;

/// The harness around a window of `size`: the app is laid out inside a margin.
fn harness_size(size: [f32; 2]) -> [f32; 2] {
    [size[0] + 2.0 * MARGIN, size[1] + 2.0 * MARGIN]
}

struct Tour {
    harness: Harness<'static, KeyfillApp>,
    textures: Textures,
    control: FakeControl,
    out: PathBuf,
    /// The window drawn now.
    size: [f32; 2],
}

impl Tour {
    fn settle(&mut self) {
        // Spinners keep repainting: a few frames, not `run`.
        self.harness.run_steps(6);
    }

    fn snapshot(&mut self, name: &str) {
        self.settle();
        self.capture(name);
    }

    /// The same screen in a window of `size`, then back to the usual size.
    fn snapshot_at(&mut self, size: [f32; 2], name: &str) {
        let usual = self.size;
        self.resize(size);
        self.snapshot(name);
        self.resize(usual);
        self.settle();
    }

    fn resize(&mut self, size: [f32; 2]) {
        self.size = size;
        let [width, height] = harness_size(size);
        self.harness.set_size(eframe::egui::vec2(width, height));
    }

    /// Draws the current frame as it is, without the frames `snapshot` lets pass first.
    fn capture(&mut self, name: &str) {
        let output = self.harness.output();
        let pixels_per_point = output.pixels_per_point;
        let primitives = self.harness.ctx.tessellate(output.shapes.clone(), pixels_per_point);
        let harness = harness_size(self.size);
        let size = [(harness[0] * pixels_per_point) as usize, (harness[1] * pixels_per_point) as usize];
        let frame = software_renderer::render(&self.textures, &primitives, size, pixels_per_point, Color32::WHITE);
        // The harness lays the app out inside an 8-point margin: cut it off.
        let margin = (MARGIN * pixels_per_point) as u32;
        let (width, height) = ((self.size[0] * pixels_per_point) as u32, (self.size[1] * pixels_per_point) as u32);
        let image = image::imageops::crop_imm(&frame, margin, margin, width, height).to_image();
        let path = self.out.join(format!("gui-{name}.png"));
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let file = std::io::BufWriter::new(file);
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            file,
            image::codecs::png::CompressionType::Best,
            image::codecs::png::FilterType::Adaptive,
        );
        image.write_with_encoder(encoder).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        eprintln!("wrote {}", path.display());
    }

    fn click(&mut self, role: Role, label: &str) {
        self.harness.get_by_role_and_label(role, label).click();
        self.settle();
    }

    fn type_into(&mut self, role: Role, label: &str, text: &str) {
        self.harness.get_by_role_and_label(role, label).focus();
        self.settle();
        self.harness.get_by_role_and_label(role, label).type_text(text);
        self.settle();
    }

    /// Replaces what the field holds with `text`.
    fn retype(&mut self, label: &str, text: &str) {
        self.harness.get_by_role_and_label(Role::TextInput, label).focus();
        self.settle();
        self.harness.key_press_modifiers(eframe::egui::Modifiers::COMMAND, Key::A);
        self.settle();
        self.harness.get_by_role_and_label(Role::TextInput, label).type_text(text);
        self.settle();
    }

    fn wait_for(&mut self, label: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.harness.query_by_label(label).is_none() {
            assert!(Instant::now() < deadline, "timed out waiting for {label:?}");
            std::thread::sleep(Duration::from_millis(20));
            self.harness.step();
        }
    }

    fn scan(&mut self, text: &str) {
        self.type_into(Role::TextInput, "Scan label", text);
        self.harness.key_press(Key::Enter);
        self.settle();
    }
}

fn label_payload(n: usize) -> String {
    let identity = keyfill_agent_like_payload(&format!("sensor-{n}"), &format!("SN-24-{:06}", 320_000 + n));
    identity.encode().expect("a valid payload")
}

/// A label as the factory prints it (identity mode, with a model).
fn keyfill_agent_like_payload(name: &str, serial: &str) -> OnboardingPayload {
    let mut payload = OnboardingPayload::new(
        name.parse().expect("a valid name"),
        serial,
        keyfill_formats::qr::DeviceCredential::Identity { public_key: [0x5a; 32] },
    );
    payload.model = Some("TH-200".into());
    payload
}

fn output_folder() -> PathBuf {
    match std::env::var_os("KEYFILL_SCREENSHOTS") {
        Some(folder) => PathBuf::from(folder),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("images"),
    }
}

#[test]
#[ignore = "writes the documentation's screenshots; run by scripts/screenshots"]
fn gui_screenshots_of_every_screen() {
    let out = output_folder();
    std::fs::create_dir_all(&out).unwrap();
    let control = FakeControl::new(demo_state(PASSPHRASE));
    let mut settings = Settings::default();
    settings.link.serial_port = "/dev/ttyUSB0".into();
    settings.label.folder = "/home/maria/keyfill-labels".into();
    settings.lock.after_idle_minutes = 15;
    settings.export.c2_url = "https://c2.factory.example:8888".into();
    settings.label.printer_queue = "zebra-line-3".into();
    let app = KeyfillApp::new(Bridge::new(control.connect()), settings, None);
    let textures = Textures::default();
    let harness = Harness::builder()
        .with_size(harness_size(SIZE))
        .with_pixels_per_point(1.0)
        .renderer(SoftwareRenderer { textures: textures.clone() })
        .build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);
    let mut tour = Tour { harness, textures, control, out, size: SIZE };

    tour.settle();
    tour.snapshot("unlock");
    tour.type_into(Role::PasswordInput, "Master-key passphrase", PASSPHRASE);
    tour.harness.key_press(Key::Enter);
    tour.settle();

    // A few devices provisioned by the handheld scanner fill the session table.
    for n in 1240..1244 {
        tour.scan(&label_payload(n));
        tour.harness.key_press(Key::Enter);
        tour.settle();
    }
    // One that fails, for the guide's errors section.
    tour.control.with(|state| {
        // What the real station says when the device stays silent.
        let silent = SessionError::Timeout { phase: "waiting for the handshake reply", seconds: 10 };
        state.provision_failure = Some(Problem::provision(&ProvisionError::Failed { source: silent.into() }))
    });
    tour.scan(&label_payload(1244));
    tour.harness.key_press(Key::Enter);
    tour.settle();
    tour.snapshot("provision-failed");

    // The camera reads the next label; the provisioning stops at "key sent" for one picture.
    let dir = tempfile::tempdir().unwrap();
    let label_path = dir.path().join("label.png");
    let payload = keyfill_agent_like_payload("sensor-1245", "SN-24-321245");
    let png =
        render_png(&LabelContent::from_scanned(&payload).unwrap(), &LabelSpec::LABEL_50X30.with_dpi(203)).unwrap();
    std::fs::write(&label_path, png).unwrap();
    tour.harness
        .state_mut()
        .start_camera(Box::new(ImageFiles::new(vec![label_path], Duration::from_millis(100)).repeating()));
    tour.wait_for("Keyfill label: sensor-1245");
    // At once: the outline fades 2.5 s after the read, and each harness step is a frame of time.
    tour.capture("provision-camera");
    tour.settle();
    tour.control.with(|state| state.hold_provisioning = true);
    tour.harness.key_press(Key::Enter);
    tour.settle();
    tour.snapshot("provision-running");
    tour.control.finish_provisioning();
    tour.control.with(|state| state.hold_provisioning = false);
    tour.settle();
    let id = keyfill_formats::DeviceId::from_name("sensor-1245").to_hex();
    tour.wait_for(&format!("Label saved to /home/maria/keyfill-labels/sensor-1245-{}.png", &id[..8]));
    tour.snapshot("provision");
    tour.snapshot_at(SMALL, "provision-1024x600");

    // Keying the MES's last work order: its progress beside the choice.
    tour.click(Role::ComboBox, "Work order");
    let to_go = tour.control.with(|state| state.order_counts())[2].outstanding();
    tour.harness.get_by_label(&format!("WO-2026-103 · {to_go} to go")).click();
    tour.settle();
    tour.scan(&label_payload(1246));
    tour.harness.key_press(Key::Enter);
    tour.settle();
    tour.snapshot("provision-order");
    tour.snapshot_at(SMALL, "provision-order-1024x600");

    tour.click(Role::Button, "Show in Devices");
    tour.wait_for("Device history");
    tour.snapshot("devices");
    tour.snapshot_at(SMALL, "devices-1024x600");

    // A pending device: asked over its link whether it holds its key.
    tour.retype("Search", "sensor-1015");
    tour.harness.get_by_label("sensor-1015").click();
    tour.settle();
    tour.click(Role::Button, "Reconcile…");
    tour.click(Role::Button, "Ask the device");
    tour.snapshot("devices-reconcile");
    tour.click(Role::Button, "Done");
    // Another one that can no longer be asked, about to be abandoned.
    tour.retype("Search", "sensor-1038");
    tour.harness.get_by_label("sensor-1038").click();
    tour.settle();
    tour.click(Role::Button, "Abandon…");
    tour.type_into(Role::TextInput, "Reason (kept in the event log)", "board replaced under RMA 24-0117");
    tour.click(Role::CheckBox, "I understand: the device may refuse a new key until it is factory-reset");
    tour.snapshot("devices-abandon");
    tour.click(Role::Button, "Cancel");
    tour.retype("Search", "");

    // The event log before the rotation, while it shows the day's provisioning.
    tour.click(Role::Button, Screen::History.title());
    tour.snapshot("history");

    tour.click(Role::Button, Screen::RotationExport.title());
    tour.click(Role::Button, "Start rotation");
    tour.click(Role::Button, "Export to C2");
    tour.snapshot("rotation-export");

    // The watch for first contact, a few devices having said hello.
    tour.control.with(|state| state.rotation_unconfirmed = vec!["sensor-1134".into()]);
    tour.click(Role::Button, "Watch for first contact");
    for device in ["sensor-1132", "sensor-1133", "sensor-1134", "sensor-1135", "sensor-1204"] {
        tour.control.contact(device);
    }
    tour.snapshot("rotation-watch");
    tour.click(Role::Button, "Stop watching");

    // An offline bundle for an air-gapped C2: what went in, what was left out and why.
    tour.click(Role::Button, "Offline bundle");
    tour.type_into(
        Role::TextInput,
        "C2 operator's key",
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    );
    tour.type_into(Role::TextInput, "Bundle file", "/media/usb/keys-line-3.kfb");
    tour.click(Role::Button, "Write bundle");
    tour.snapshot("bundle-export");

    tour.click(Role::Button, Screen::Settings.title());
    tour.snapshot("settings");
}

/// The tour's app and harness over `control`, drawn by the CPU rasterizer.
fn custody_tour(control: FakeControl, out: PathBuf) -> Tour {
    let mut settings = Settings::default();
    settings.link.serial_port = "/dev/ttyUSB0".into();
    let app = KeyfillApp::new(Bridge::new(control.connect()), settings, None);
    let textures = Textures::default();
    let harness = Harness::builder()
        .with_size(harness_size(SIZE))
        .with_pixels_per_point(1.0)
        .renderer(SoftwareRenderer { textures: textures.clone() })
        .build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);
    Tour { harness, textures, control, out, size: SIZE }
}

/// Named operators: the login form (any operator; two officers under an unlock quorum) and
/// the two-person approval of a bundle export, with a refusal shown in the dialog.
#[test]
#[ignore = "writes the documentation's screenshots; run by scripts/screenshots"]
fn gui_screenshots_of_custody_login_and_approval() {
    use keyfill_gui::messages::CustodySummary;
    use keyfill_gui::station_handle::fake::FakeOperator;
    use keyfill_station::custody::Role as OperatorRole;
    let out = output_folder();
    std::fs::create_dir_all(&out).unwrap();
    let roster = || {
        vec![
            FakeOperator::new("anna", OperatorRole::SecurityOfficer, "anna-pw"),
            FakeOperator::new("ben", OperatorRole::SecurityOfficer, "ben-pw"),
            FakeOperator::new("sam", OperatorRole::Supervisor, "sam-pw"),
        ]
    };

    // Under an unlock quorum of two: the supervisor who will work, and two officers.
    let quorum = CustodySummary { unlock_quorum: 2, approvals: 2 };
    let control = FakeControl::new(demo_state(PASSPHRASE).with_named_operators(quorum, roster()));
    let mut tour = custody_tour(control, out.clone());
    tour.settle();
    tour.type_into(Role::TextInput, "Operator name", "sam");
    tour.type_into(Role::PasswordInput, "Passphrase", "sam-pw");
    tour.type_into(Role::TextInput, "Officer 1 name", "anna");
    tour.type_into(Role::PasswordInput, "Officer 1 passphrase", "anna-pw");
    tour.type_into(Role::TextInput, "Officer 2 name", "ben");
    tour.snapshot("login-quorum");

    // Any operator's login unlocks.
    let policy = CustodySummary { unlock_quorum: 1, approvals: 2 };
    let control = FakeControl::new(demo_state(PASSPHRASE).with_named_operators(policy, roster()));
    let mut tour = custody_tour(control, out);
    tour.settle();
    tour.type_into(Role::TextInput, "Operator name", "sam");
    tour.snapshot("login");
    tour.snapshot_at(SMALL, "login-1024x600");
    tour.type_into(Role::PasswordInput, "Passphrase", "sam-pw");
    tour.click(Role::Button, "Log in");

    tour.click(Role::Button, Screen::RotationExport.title());
    tour.click(Role::Button, "Offline bundle");
    tour.type_into(
        Role::TextInput,
        "C2 operator's key",
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    );
    tour.type_into(Role::TextInput, "Bundle file", "/media/usb/keys-line-3.kfb");
    tour.click(Role::Button, "Write bundle");
    tour.type_into(Role::TextInput, "Officer 1 name", "anna");
    tour.type_into(Role::PasswordInput, "Officer 1 passphrase", "anna-pw");
    tour.type_into(Role::TextInput, "Officer 2 name", "ben");
    tour.type_into(Role::PasswordInput, "Officer 2 passphrase", "wrong");
    tour.click(Role::Button, "Approve and export");
    tour.type_into(Role::PasswordInput, "Officer 1 passphrase", "anna-pw");
    tour.snapshot("approval");
    tour.snapshot_at(SMALL, "approval-1024x600");
}
