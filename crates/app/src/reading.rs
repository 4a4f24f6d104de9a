//! Reading the global log a page at a time, filtered by type and agency.

use crate::{App, Error};
use domain::event::EventType;
use domain::{AgencyCode, StoredEvent};
use serde::Serialize;

/// The most events one page (or one read of a stream) holds.
pub const PAGE_EVENTS_MAX: usize = 1_000;

/// A page size asked for: 1 to `max`, 100 when not given.
pub fn page_limit(limit: Option<usize>, max: usize) -> Result<usize, Error> {
    match limit.unwrap_or(100) {
        n @ 1.. if n <= max => Ok(n),
        _ => Err(Error::bad_parameter(
            "limit",
            format!("limit must be 1 to {max}"),
        )),
    }
}

/// A filter on the global log: one event type, one agency, or both.
#[derive(Default)]
pub struct Filter {
    ty: Option<EventType>,
    agency: Option<AgencyCode>,
}

impl Filter {
    /// The filter of a `type` and an `agency` parameter, each optional.
    pub fn parse(ty: Option<&str>, agency: Option<&str>) -> Result<Filter, Error> {
        Ok(Filter {
            ty: ty
                .map(EventType::from_name)
                .transpose()
                .map_err(|detail| Error::bad_parameter("type", detail))?,
            agency: agency
                .map(AgencyCode::parse)
                .transpose()
                .map_err(|detail| Error::bad_parameter("agency", detail))?,
        })
    }

    /// Whether this filter keeps nothing out.
    pub fn is_empty(&self) -> bool {
        self.ty.is_none() && self.agency.is_none()
    }

    /// [`Filter::keeps`] of an event's stored bytes, read without decoding the rest.
    pub fn keeps_raw(&self, e: &store::RawEvent) -> Result<bool, Error> {
        if self.is_empty() {
            return Ok(true);
        }
        let peek = domain::event::Peek::of(&e.bytes).map_err(Error::Internal)?;
        Ok(self.matches(&peek.ty, peek.agency.as_deref()))
    }

    pub fn keeps(&self, e: &StoredEvent) -> bool {
        let agency = e.event.agency.as_ref().map(AgencyCode::as_str);
        self.matches(e.event.event_type().as_str(), agency)
    }

    /// The one test both forms go through: an event of type `ty` at `agency`.
    fn matches(&self, ty: &str, agency: Option<&str>) -> bool {
        self.ty.is_none_or(|t| t.as_str() == ty)
            && self
                .agency
                .as_ref()
                .is_none_or(|a| Some(a.as_str()) == agency)
    }
}

/// A page of the global log.
#[derive(Serialize)]
pub struct EventsPage {
    pub events: Vec<StoredEvent>,
    /// The cursor for the next page (`after=`); null at the head.
    pub next_after: Option<u64>,
    pub log_size: u64,
}

impl App {
    /// Up to `limit` events (1 to `PAGE_EVENTS_MAX`, default 100) after `after` that `filter` keeps, scanning
    /// forward until the page is full or the log ends; events filtered out still advance the cursor.
    pub fn events_page(
        &self,
        after: u64,
        limit: Option<usize>,
        filter: &Filter,
    ) -> Result<EventsPage, Error> {
        let limit = page_limit(limit, PAGE_EVENTS_MAX)?;
        let head = self.head_for(after.checked_add(1))?;
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut cursor = after;
        while events.len() < limit && cursor < head {
            let page = self.log.read_after(cursor, PAGE_EVENTS_MAX)?;
            let Some(last) = page.last() else { break };
            let last = last.position;
            for e in page {
                if events.len() == limit {
                    break;
                }
                cursor = e.position;
                if filter.keeps(&e) {
                    events.push(e);
                }
            }
            if events.len() < limit {
                cursor = last;
            }
        }
        Ok(EventsPage {
            events,
            next_after: (cursor < head).then_some(cursor),
            log_size: head,
        })
    }
}
