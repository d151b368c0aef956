//! One device's provisioning job, as the command line and the line mode run it: take the device's
//! lease (waiting while another station sharing the database works on it), look at its record
//! again, admit its label under the work-order policy, open its link, provision.
//!
//! The job is split where it stops being safe to abandon: [`Station::prepare_job`] changes nothing
//! (dropping its future drops the lease, and the link if opened); [`Station::finish_job`] runs the
//! session, which records each step and is left to finish.

use crate::db::devices::{self, Device, DeviceState};
use crate::detect::LinkTarget;
use crate::lease::{DeviceLease, Purpose};
use crate::link::{AnyLink, LinkError};
use crate::provision::{Progress, ProvisionError, ProvisionReport, Station};
use keyfill_formats::qr::OnboardingPayload;
use std::time::Duration;
use thiserror::Error;

/// How long a job waits for another station sharing the database to finish with its device: the
/// longest a provisioning there takes (a reconciliation and a delivery at the longest timeouts).
pub const LEASE_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// What a job reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStep {
    /// Another station sharing the database holds the device's lease.
    WaitingFor {
        station: String,
    },
    /// Opening the link (after a wait: the other station left the device unfinished).
    Opening {
        link: String,
        after_wait: bool,
    },
    Session(Progress),
}

/// A prepared job: the device's lease and its open link.
#[derive(Debug)]
pub struct PreparedJob {
    lease: DeviceLease,
    link: AnyLink,
}

/// How preparing ended, when nothing went wrong.
#[derive(Debug)]
pub enum Prepared {
    Ready(PreparedJob),
    /// Provisioned before this job: by another station sharing the database, or earlier here.
    /// It is not keyed again.
    AlreadyProvisioned(Device),
}

/// How a finished job ended, when nothing went wrong.
#[derive(Debug)]
pub enum JobOutcome {
    Provisioned(ProvisionReport),
    AlreadyProvisioned(Device),
}

#[derive(Debug, Error)]
pub enum JobError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

impl JobError {
    /// What the operator should do next.
    pub fn advice(&self) -> Option<String> {
        match self {
            JobError::Link(error) => Some(format!("{} Nothing was sent to the device.", error.advice())),
            JobError::Provision(error) => error.advice(),
        }
    }

    /// Whether the device may hold a key this station recorded as pending.
    pub fn left_pending(&self) -> bool {
        matches!(
            self,
            JobError::Provision(ProvisionError::Unconfirmed { .. } | ProvisionError::ReconcileIncomplete { .. })
        )
    }
}

impl Station {
    /// Takes the device's lease (waiting up to `patience` for another station), reads its record
    /// again, admits its label and opens `target` (a card or BLE advertisement awaited up to
    /// `wait`). Records nothing.
    pub async fn prepare_job(
        &self,
        target: &LinkTarget,
        wait: Duration,
        payload: &OnboardingPayload,
        patience: Duration,
        on_step: &mut (dyn FnMut(JobStep) + Send),
    ) -> Result<Prepared, JobError> {
        let id = payload.device_id.to_hex();
        let (lease, waited) = match self.lease(&id, Purpose::Provision).await {
            Ok(lease) => (lease, false),
            Err(ProvisionError::Leased { station, .. }) => {
                on_step(JobStep::WaitingFor { station });
                self.lease_waiting(&id, Purpose::Provision, patience).await?
            }
            Err(error) => return Err(error.into()),
        };
        if let Some(device) = devices::get(self.inventory.pool(), &id).await.map_err(ProvisionError::Db)?
            && device.state == DeviceState::Provisioned
        {
            lease.release().await;
            return Ok(Prepared::AlreadyProvisioned(device));
        }
        if let Err(error) = self.admitted(payload).await {
            lease.release().await;
            return Err(error.into());
        }
        on_step(JobStep::Opening { link: target.describe(), after_wait: waited });
        match target.open(wait, payload).await {
            Ok(link) => Ok(Prepared::Ready(PreparedJob { lease, link })),
            Err(error) => {
                lease.release().await;
                Err(error.into())
            }
        }
    }

    /// Runs the session of a prepared job and releases its lease.
    pub async fn finish_job(
        &self,
        job: PreparedJob,
        payload: &OnboardingPayload,
        on_step: &mut (dyn FnMut(JobStep) + Send),
    ) -> Result<ProvisionReport, JobError> {
        let PreparedJob { lease, mut link } = job;
        let result = self.provision_leased(&lease, &mut link, payload, |step| on_step(JobStep::Session(step))).await;
        drop(link);
        lease.release().await;
        Ok(result?)
    }

    /// [`Station::prepare_job`] then [`Station::finish_job`].
    pub async fn provision_job(
        &self,
        target: &LinkTarget,
        wait: Duration,
        payload: &OnboardingPayload,
        patience: Duration,
        on_step: &mut (dyn FnMut(JobStep) + Send),
    ) -> Result<JobOutcome, JobError> {
        match self.prepare_job(target, wait, payload, patience, on_step).await? {
            Prepared::AlreadyProvisioned(device) => Ok(JobOutcome::AlreadyProvisioned(device)),
            Prepared::Ready(job) => Ok(JobOutcome::Provisioned(self.finish_job(job, payload, on_step).await?)),
        }
    }
}
