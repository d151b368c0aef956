//! Work orders from the MES: import, the provisioning policy that admits only devices on an open
//! order, closing, and the signed reconciliation report ([`report`]).

pub mod file;
pub mod report;

use crate::db::orders::{self, ItemState, NewItem, OrderCounts, OrderRow};
use crate::db::{DbError, commit, events, now_millis};
use crate::provision::Station;
use file::{OrderId, OrderLine};
use keyfill_formats::printable;
use keyfill_formats::qr::OnboardingPayload;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OrderError {
    #[error(
        "order {id} exists already with other devices (imported from {source_file}): an order is imported once; \
         give the changed order a new id"
    )]
    Exists { id: String, source_file: String },
    #[error("no order {0}")]
    NotFound(String),
    #[error("order {0} is closed already")]
    Closed(String),
    #[error(
        "device {name:?} of order {order} is also on open order {other}: a device belongs to one open order; \
         close or correct {other} first"
    )]
    OnAnotherOrder { name: String, order: String, other: String },
    #[error(
        "order {id} still has {pending} device(s) pending confirmation and {not_started} not yet keyed: finish \
         them, or close it with --force and a --reason (they are then reported as outstanding)"
    )]
    Outstanding { id: String, pending: i64, not_started: i64 },
    #[error("a forced close needs a reason, for the report and the event log")]
    ReasonRequired,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        OrderError::Db(error.into())
    }
}

/// What importing did to one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    Created {
        id: OrderId,
        devices: usize,
    },
    /// The same order was imported before: nothing changed.
    Unchanged {
        id: OrderId,
        devices: usize,
    },
}

/// SHA-256 over the order's lines in file order, to tell a repeated import from a changed one.
fn digest(lines: &[&OrderLine]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for line in lines {
        for field in [
            Some(line.device_name.as_str()),
            line.model.as_deref(),
            Some(line.serial_number.as_str()),
            line.link.as_deref(),
            line.batch.as_deref(),
        ] {
            let field = field.unwrap_or("");
            context.update(&(field.len() as u64).to_be_bytes());
            context.update(field.as_bytes());
        }
    }
    hex::encode(context.finish())
}

/// Imports the orders of one file in one transaction: every order is created, or the import
/// changes nothing. An order imported before with the same devices is left as it is (the MES may
/// send a file again); with other devices, refused.
pub async fn import(station: &Station, source: &str, lines: Vec<OrderLine>) -> Result<Vec<Imported>, OrderError> {
    let pool = station.inventory.pool();
    let mut grouped: Vec<(OrderId, Vec<&OrderLine>)> = Vec::new();
    for line in &lines {
        match grouped.iter_mut().find(|(id, _)| *id == line.order_id) {
            Some((_, group)) => group.push(line),
            None => grouped.push((line.order_id.clone(), vec![line])),
        }
    }
    let mut results = Vec::new();
    let mut tx = pool.begin().await?;
    for (id, group) in &grouped {
        let digest = digest(group);
        if let Some(existing) = orders::get(pool, id.as_str()).await? {
            if existing.digest != digest {
                return Err(OrderError::Exists { id: id.to_string(), source_file: printable(&existing.source).into() });
            }
            results.push(Imported::Unchanged { id: id.clone(), devices: group.len() });
            continue;
        }
        let row = OrderRow {
            id: id.to_string(),
            state: "open".into(),
            source: source.to_owned(),
            digest,
            imported_at: now_millis(),
            imported_by: station.actor.station_id.clone(),
            operator: station.actor.operator.clone(),
            closed_at: None,
            closed_by: None,
            close_reason: None,
        };
        let items: Vec<NewItem> = group
            .iter()
            .map(|line| NewItem {
                device_id: line.device_name.device_id().to_hex(),
                device_name: line.device_name.as_str().to_owned(),
                model: line.model.clone(),
                serial_number: line.serial_number.clone(),
                link: line.link.clone(),
                batch: line.batch.clone(),
            })
            .collect();
        orders::insert_order(&mut tx, &row, &items).await?;
        if let Some((name, other)) = orders::also_on_open_orders(&mut tx, id.as_str(), 1).await?.into_iter().next() {
            return Err(OrderError::OnAnotherOrder { name: printable(&name).into(), order: id.to_string(), other });
        }
        let detail = format!("order {id}: {} device(s) from {}", group.len(), printable(source));
        events::record(&mut tx, &station.actor, None, "order_imported", &detail).await?;
        results.push(Imported::Created { id: id.clone(), devices: group.len() });
    }
    commit(tx, "orders-imported").await?;
    Ok(results)
}

/// Closes an order. Refused while devices are outstanding (pending or not keyed), unless
/// `force_reason` says why.
pub async fn close(station: &Station, id: &str, force_reason: Option<&str>) -> Result<OrderCounts, OrderError> {
    let pool = station.inventory.pool();
    let counts = orders::counts(pool, id).await?.ok_or_else(|| OrderError::NotFound(printable(id).into()))?;
    if counts.state != "open" {
        return Err(OrderError::Closed(id.to_owned()));
    }
    if let Some(reason) = force_reason
        && reason.trim().is_empty()
    {
        return Err(OrderError::ReasonRequired);
    }
    if counts.outstanding() > 0 && force_reason.is_none() {
        return Err(OrderError::Outstanding {
            id: id.to_owned(),
            pending: counts.pending,
            not_started: counts.not_started,
        });
    }
    let mut tx = pool.begin().await?;
    if !orders::close(&mut tx, id, &station.actor.station_id, force_reason).await? {
        return Err(OrderError::Closed(id.to_owned()));
    }
    let detail = match force_reason {
        Some(reason) => format!(
            "order {id} closed by force with {} outstanding ({} pending, {} not keyed): {reason}",
            counts.outstanding(),
            counts.pending,
            counts.not_started
        ),
        None => format!("order {id} closed: {} provisioned, {} failed", counts.provisioned, counts.failed),
    };
    events::record(&mut tx, &station.actor, None, "order_closed", &detail).await?;
    commit(tx, "order-closed").await?;
    Ok(orders::counts(pool, id).await?.unwrap_or(counts))
}

/// Which labels the station keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPolicy {
    /// Refuse a device that is on no open order.
    pub required: bool,
    /// Key only the devices of this order (and record them under it).
    pub current: Option<OrderId>,
}

/// Why a label is not admitted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAdmitted {
    #[error("device {name:?} is on no open work order, and this station keys only devices on one")]
    NoOrder { name: String },
    #[error("device {name:?} is not on work order {order} (the order this station is keying)")]
    NotOnOrder { name: String, order: String },
    #[error("work order {order} is not open")]
    OrderNotOpen { order: String },
    #[error("the label of device {name:?} says {field} {label:?}, and work order {order} says {ordered:?}")]
    Mismatch { name: String, order: String, field: &'static str, label: String, ordered: String },
}

impl OrderPolicy {
    /// The order a device is keyed under: the current order, else the open order that lists it.
    /// A label whose serial number or model differs from its order's is refused.
    pub async fn admit(&self, pool: &sqlx::AnyPool, payload: &OnboardingPayload) -> Result<Option<String>, AdmitError> {
        if !self.required && self.current.is_none() {
            // Still recorded under the order that lists it, if one does.
            let items = orders::open_items_for(pool, &payload.device_id.to_hex()).await?;
            return match items.first() {
                Some(item) => matches_label(item, payload).map(|()| Some(item.order_id.clone())),
                None => Ok(None),
            };
        }
        let name = printable(payload.name.as_str()).into_owned();
        let items = orders::open_items_for(pool, &payload.device_id.to_hex()).await?;
        let item = match &self.current {
            Some(order) => {
                if orders::get(pool, order.as_str()).await?.is_none_or(|o| o.state != "open") {
                    return Err(NotAdmitted::OrderNotOpen { order: order.to_string() }.into());
                }
                items
                    .iter()
                    .find(|item| item.order_id == order.as_str())
                    .ok_or(NotAdmitted::NotOnOrder { name, order: order.to_string() })?
            }
            None => items.first().ok_or(NotAdmitted::NoOrder { name })?,
        };
        matches_label(item, payload)?;
        Ok(Some(item.order_id.clone()))
    }
}

/// Errors of [`OrderPolicy::admit`].
#[derive(Debug, Error)]
pub enum AdmitError {
    #[error(transparent)]
    NotAdmitted(#[from] NotAdmitted),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn matches_label(item: &ItemState, payload: &OnboardingPayload) -> Result<(), AdmitError> {
    let mismatch = |field: &'static str, label: &str, ordered: &str| NotAdmitted::Mismatch {
        name: printable(payload.name.as_str()).into_owned(),
        order: item.order_id.clone(),
        field,
        label: printable(label).into_owned(),
        ordered: printable(ordered).into_owned(),
    };
    if payload.serial_number != item.serial_number {
        return Err(mismatch("serial number", &payload.serial_number, &item.serial_number).into());
    }
    if let Some(ordered) = &item.model
        && payload.model.as_deref() != Some(ordered.as_str())
    {
        return Err(mismatch("model", payload.model.as_deref().unwrap_or(""), ordered).into());
    }
    Ok(())
}
