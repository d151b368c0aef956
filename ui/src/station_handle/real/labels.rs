//! Labels after provisioning: rendered off the async workers, saved to the label folder, and
//! sent to CUPS with `lp -d QUEUE FILE` when a queue is configured.

use crate::bridge::EventSender;
use crate::messages::{Event, LabelRequest, LabelSaved};
use crate::problem::Problem;
use crate::screens::settings::find_lp;
use keyfill_station::label::{self, LabelContent};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A print job that takes longer is reported as failed (the file is saved anyway).
const PRINT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn save(request: Box<LabelRequest>, events: EventSender) {
    let job = request.job;
    let outcome = async {
        let saved = {
            let request = request.clone();
            tokio::task::spawn_blocking(move || render_and_write(&request))
                .await
                .map_err(|e| Problem::new(format!("Making the label stopped: {e}."), "Save it again from Devices."))??
        };
        let (printed_on, print_problem) = match &request.printer_queue {
            Some(queue) => match print(queue, &saved).await {
                Ok(()) => (Some(queue.clone()), None),
                Err(problem) => (None, Some(problem)),
            },
            None => (None, None),
        };
        Ok(LabelSaved { path: saved, printed_on, print_problem })
    }
    .await;
    events.send(Event::Label { job, outcome });
}

fn render_and_write(request: &LabelRequest) -> Result<PathBuf, Problem> {
    let content = LabelContent::for_device(&request.device).map_err(|e| Problem::label(&e))?;
    let bytes = label::render(&content, &request.spec, request.format).map_err(|e| Problem::label(&e))?;
    let cannot_write = |e: std::io::Error| {
        Problem::new(
            format!("Cannot save the label in {}: {e}.", request.folder.display()),
            "Choose a folder you may write to in Settings > Labels.",
        )
    };
    std::fs::create_dir_all(&request.folder).map_err(cannot_write)?;
    let path = request.folder.join(request.file_name());
    std::fs::write(&path, bytes).map_err(cannot_write)?;
    Ok(path)
}

async fn print(queue: &str, file: &Path) -> Result<(), Problem> {
    let Some(lp) = find_lp() else {
        return Err(Problem::new(
            "Not printed: lp (CUPS) is not installed.",
            format!(
                "Install the cups-client package, or set labels to Save only in Settings > Labels. The label is saved in {}.",
                file.display()
            ),
        ));
    };
    let run = tokio::process::Command::new(lp).arg("-d").arg(queue).arg(file).kill_on_drop(true).output();
    match tokio::time::timeout(PRINT_TIMEOUT, run).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => Err(Problem::new(
            format!("Not printed: lp said {}.", String::from_utf8_lossy(&output.stderr).trim()),
            format!("Check the queue name ({queue}) with `lpstat -p` and that the printer is on. The label is saved."),
        )),
        Ok(Err(error)) => Err(Problem::new(
            format!("Not printed: cannot run lp: {error}."),
            "Check the CUPS installation. The label is saved.",
        )),
        Err(_) => Err(Problem::new(
            "Not printed: lp did not finish within 30 s.",
            format!("Check that CUPS runs and the queue {queue} accepts jobs. The label is saved."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_station::db::devices::{Device, DeviceState};
    use keyfill_station::label::{LabelFormat, LabelSpec};

    #[test]
    fn gui_label_file_names_are_safe() {
        let device = Device {
            id: "0123456789abcdef0123456789abcdef".into(),
            name: "../line 3/sensor".into(),
            serial_number: "SN".into(),
            credential_mode: "identity".into(),
            identity_public_key: None,
            sealed_setup_secret: None,
            model: None,
            state: DeviceState::Provisioned,
            transport: None,
            port: None,
            key_id: None,
            failure: None,
            created_at: 0,
            updated_at: 0,
            provisioned_at: None,
            rotation: None,
            rotation_attempts: None,
            order_id: None,
        };
        let request = LabelRequest {
            job: 1,
            device,
            folder: "/tmp".into(),
            format: LabelFormat::Pdf,
            spec: LabelSpec::default(),
            printer_queue: None,
        };
        assert_eq!(request.file_name(), "_line_3_sensor-01234567.pdf");
    }
}
