//! The real station: the station library on a tokio runtime thread of its own.
//!
//! One task takes commands in order. Quick ones (the inventory, the event log) and long ones
//! (provisioning, rotation, export, labels) run as tasks of their own, so a slow link never
//! holds up the device table. Locking stops taking work that needs the master key, stops a
//! watch for first contact (it would otherwise never end), waits for the tasks in flight, then
//! drops the unlocked station: its keys are zeroized on drop.

mod bundle;
mod custody;
mod device_actions;
mod export;
mod inventory;
mod labels;
mod links;
mod provision;
mod rotation;
mod watch;

use crate::bridge::EventSender;
use crate::messages::{Command, Event, JobId, LoginRequest, Passphrase, StationIdentity, StationSummary};
use crate::problem::Problem;
use crate::station_handle::StationHandle;
use keyfill_station::db::{Inventory, redact_url};
use keyfill_station::home::{HomeError, StationHome};
use keyfill_station::provision::Station;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// Where the station's state lives and who operates it.
#[derive(Debug, Clone)]
pub struct StationConfig {
    pub home: PathBuf,
    pub db_url: String,
    pub operator: String,
}

#[derive(Debug)]
pub struct RealStation {
    commands: mpsc::UnboundedSender<Command>,
}

impl RealStation {
    /// Starts the station thread; its first event is [`Event::Station`].
    pub fn spawn(config: StationConfig, events: EventSender) -> std::io::Result<Self> {
        let (commands, receiver) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        std::thread::Builder::new().name("station".into()).spawn(move || {
            let task = StationTask {
                config,
                events,
                station: None,
                custody: None,
                jobs: JoinSet::new(),
                watch_stop: None,
                provision_cancel: None,
            };
            runtime.block_on(task.run(receiver));
        })?;
        Ok(RealStation { commands })
    }
}

impl StationHandle for RealStation {
    fn send(&mut self, command: Command) {
        // The station thread ends only with the app, so nobody is left to tell.
        let _ = self.commands.send(command);
    }
}

struct StationTask {
    config: StationConfig,
    events: EventSender,
    /// Unlocked; shared with the jobs that need it.
    station: Option<Arc<Station>>,
    /// The operator logged in, at a station with named operators.
    custody: Option<Arc<custody::CustodyLogin>>,
    jobs: JoinSet<()>,
    /// Stops the watch for first contact, while one runs.
    watch_stop: Option<oneshot::Sender<()>>,
    /// Cancels the provisioning started last, by its job.
    provision_cancel: Option<(JobId, oneshot::Sender<()>)>,
}

impl StationTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        self.events.send(Event::Station(self.summary()));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                // Reap finished jobs so the set does not grow.
                Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => {}
            }
        }
        self.lock().await;
    }

    fn summary(&self) -> StationSummary {
        let home = StationHome::new(&self.config.home);
        let token = home.token_file().ok().flatten().map(|file| file.token);
        let identity = home.info().ok().map(|info| StationIdentity {
            name: info.station_name,
            id: info.station_id.iter().map(|b| format!("{b:02x}")).collect(),
            token,
        });
        StationSummary {
            home: self.config.home.clone(),
            database: redact_url(&self.config.db_url),
            operator: self.config.operator.clone(),
            custody: custody::summary(&home),
            identity,
        }
    }

    fn spawn(&mut self, job: impl Future<Output = ()> + Send + 'static) {
        self.jobs.spawn(job);
    }

    async fn handle(&mut self, command: Command) {
        let events = self.events.clone();
        match command {
            Command::Unlock(passphrase) => self.unlock(passphrase).await,
            Command::Login(request) => self.login(*request).await,
            Command::Lock => self.lock().await,
            Command::DetectLinks => self.spawn(links::detect(events)),
            Command::SaveLabel(request) => self.spawn(labels::save(request, events)),
            Command::StopWatch => self.stop_watch(),
            Command::CancelProvision { job } => self.cancel_provision(job),
            command => {
                let name = command.name();
                let Some(station) = self.station.clone() else {
                    events.send(Event::Problem { command: name, problem: Problem::locked() });
                    return;
                };
                // The buttons are disabled for a role that may not; this refuses it all the same.
                if let Some(problem) = self.custody.as_ref().and_then(|custody| custody.refusal(&command)) {
                    events.send(Event::Problem { command: name, problem });
                    return;
                }
                match command {
                    Command::Provision(request) => {
                        let (cancel, cancelled) = oneshot::channel();
                        self.provision_cancel = Some((request.job, cancel));
                        self.spawn(provision::run(station, request, cancelled, events));
                    }
                    Command::LoadDevices => self.spawn(inventory::devices(station, events)),
                    Command::LoadOrders => self.spawn(inventory::orders(station, events)),
                    Command::LoadDeviceDetail { id } => self.spawn(inventory::detail(station, id, events)),
                    Command::LoadHistory(query) => self.spawn(inventory::history(station, query, events)),
                    Command::Rotate(request) => self.spawn(rotation::run(station, request, events)),
                    Command::ExportC2(request) => self.spawn(export::run(station, request, events)),
                    Command::WatchRotation(request) => self.watch(station, request),
                    Command::ExportBundle(request) => match self.custody.clone() {
                        // Named operators: the security officers approve it first (dual control).
                        Some(custody) => self.spawn(custody::approved_bundle(
                            station,
                            self.config.home.clone(),
                            custody,
                            request,
                            events,
                        )),
                        None => self.spawn(bundle::run(station, self.config.home.clone(), request, events)),
                    },
                    Command::Reconcile(request) => self.spawn(device_actions::reconcile(station, request, events)),
                    Command::Abandon(request) => self.spawn(device_actions::abandon(station, request, events)),
                    Command::Unlock(_)
                    | Command::Login(_)
                    | Command::Lock
                    | Command::DetectLinks
                    | Command::SaveLabel(_)
                    | Command::StopWatch
                    | Command::CancelProvision { .. } => {}
                }
            }
        }
    }

    fn watch(&mut self, station: Arc<Station>, request: crate::messages::WatchRequest) {
        if self.watch_stop.as_ref().is_some_and(|stop| !stop.is_closed()) {
            let problem = Problem::new(
                "Already watching for first contact.",
                "Stop the watch first, then start it again with the new broker or settings.",
            );
            self.events.send(Event::Problem { command: "watch_rotation", problem });
            return;
        }
        let (stop, stopped) = oneshot::channel();
        self.watch_stop = Some(stop);
        self.spawn(watch::run(station, request, stopped, self.events.clone()));
    }

    fn cancel_provision(&mut self, job: JobId) {
        if let Some((running, cancel)) = self.provision_cancel.take() {
            if running == job {
                // Already ended when the receiver is gone: its outcome is on its way.
                let _ = cancel.send(());
            } else {
                self.provision_cancel = Some((running, cancel));
            }
        }
    }

    fn stop_watch(&mut self) {
        if let Some(stop) = self.watch_stop.take() {
            // Already ended (the broker failed) when the receiver is gone: nothing to stop.
            let _ = stop.send(());
        }
    }

    /// The station home, or (said to the window) why there is none to unlock.
    fn initialised_home(&self) -> Option<StationHome> {
        let home = StationHome::new(&self.config.home);
        if home.is_initialised() {
            return Some(home);
        }
        let problem = Problem::not_initialised(&self.config.home.display().to_string());
        self.events.send(Event::UnlockFailed(problem));
        None
    }

    async fn unlock(&mut self, passphrase: Passphrase) {
        if self.station.is_some() {
            self.events.send(Event::Unlocked);
            return;
        }
        let Some(home) = self.initialised_home() else { return };
        if home.has_named_operators() {
            self.events.send(Event::UnlockFailed(Problem::named_operators()));
            return;
        }
        // PBKDF2 with 600,000 iterations: seconds of CPU, off the async workers. The passphrase
        // is moved in and wiped when the closure drops it.
        let operator = self.config.operator.clone();
        let unlocked = tokio::task::spawn_blocking(move || {
            let unlocked = home.unlock(passphrase.expose())?;
            let actor = home.actor(&unlocked, &operator)?;
            Ok::<_, HomeError>((unlocked, actor))
        })
        .await;
        let (unlocked, actor) = match unlocked {
            Ok(Ok(unlocked)) => unlocked,
            Ok(Err(error)) => {
                self.events.send(Event::UnlockFailed(Problem::unlock(&error)));
                return;
            }
            Err(join) => {
                let problem = Problem::new(format!("Unlocking stopped: {join}."), "Try again.");
                self.events.send(Event::UnlockFailed(problem));
                return;
            }
        };
        let inventory = match Inventory::open(&self.config.db_url).await {
            Ok(inventory) => inventory,
            Err(error) => {
                self.events.send(Event::UnlockFailed(Problem::database(&error)));
                return;
            }
        };
        // Checks that the inventory is this station's (its master key) before anything is read.
        match Station::start(inventory, unlocked, actor).await {
            Ok(station) => self.station = Some(Arc::new(station)),
            Err(error) => {
                self.events.send(Event::UnlockFailed(Problem::database(&error)));
                return;
            }
        }
        self.events.send(Event::Unlocked);
    }

    /// Named operators: logs them in, unlocks from their logins, and starts the station with
    /// the logged-in operator as the actor of every event.
    async fn login(&mut self, request: LoginRequest) {
        if let (Some(_), Some(custody)) = (&self.station, &self.custody) {
            self.events.send(Event::LoggedIn(custody.signed_in()));
            self.events.send(Event::Unlocked);
            return;
        }
        let Some(home) = self.initialised_home() else { return };
        if !home.has_named_operators() {
            let problem =
                Problem::new("This station has no named operators.", "Unlock it with the master-key passphrase.");
            self.events.send(Event::UnlockFailed(problem));
            return;
        }
        match custody::log_in(self.config.home.clone(), &self.config.db_url, request).await {
            Ok((station, login)) => {
                let signed_in = login.signed_in();
                self.station = Some(Arc::new(station));
                self.custody = Some(Arc::new(login));
                self.events.send(Event::LoggedIn(signed_in));
                self.events.send(Event::Unlocked);
            }
            Err(problem) => {
                self.events.send(Event::UnlockFailed(problem));
            }
        }
    }

    /// Takes no new work, waits for the work in flight, then drops the unlocked station.
    async fn lock(&mut self) {
        let station = self.station.take();
        self.custody = None;
        self.stop_watch();
        while self.jobs.join_next().await.is_some() {}
        if let Some(station) = station {
            match Arc::try_unwrap(station) {
                Ok(station) => {
                    station.inventory.close().await;
                    drop(station);
                }
                // Every job holding a clone has ended, so this cannot happen; dropping our
                // clone still leaves the last holder to zeroize the keys.
                Err(station) => drop(station),
            }
        }
        self.events.send(Event::Locked);
    }
}
