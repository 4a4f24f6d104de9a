//! The on-time rule (`indicators.md` §2; Decision 766 criterion 2.1), written once. The dossier state
//! (`GET /v1/dossiers/{code}`), the indicator engine and every report judge a dossier through [`Clock`].
//!
//! - Dates, not times, are compared, in Vietnam time: finished on a date before the due date is early, on it on
//!   time, after it late. Each supplement pause moves the due time by its length.
//! - While documents are awaited the processing clock stands still: an open dossier waiting for a supplement
//!   stands as it did when the documents were asked for.
//! - Asking for documents a second time makes the dossier late, whatever the dates.
//! - A dossier with no due time was promised nothing: it cannot be late by date.
//!
//! Instants are Unix seconds (the indicators compare them to the second); a fraction of a second never moves a
//! date, since a day starts on a whole second.

use crate::calendar::vietnam_day;
use crate::stream::Timeliness;

/// What the rule reads of a dossier, as the dossier stood at the instant it is judged at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// The due time, if one was promised.
    pub due: Option<i64>,
    /// The total length of the supplement pauses that had ended by then, each its exact interval in whole seconds
    /// (as `DossierState::supplement_paused_secs` counts them).
    pub paused: i64,
    /// When the pause still running then began.
    pub pending_since: Option<i64>,
    /// Whether documents had been asked for more than once by then.
    pub repeated: bool,
}

impl Clock {
    /// The verdict on a dossier whose processing ended at `end` (`Early`, `OnTime` or `Late`), with the clock as it
    /// stood at `end`. A pause still pending at the end counts up to the end.
    pub fn at_end(&self, end: i64) -> Timeliness {
        if self.repeated {
            return Timeliness::Late;
        }
        let Some(due) = self.due else {
            return Timeliness::OnTime;
        };
        let pending = self.pending_since.map_or(0, |since| (end - since).max(0));
        match vietnam_day(end).cmp(&vietnam_day(due + self.paused + pending)) {
            std::cmp::Ordering::Less => Timeliness::Early,
            std::cmp::Ordering::Equal => Timeliness::OnTime,
            std::cmp::Ordering::Greater => Timeliness::Late,
        }
    }

    /// The verdict on a dossier still open at `t` (`OpenInTime` or `OpenLate`), with the clock as it stood at `t`.
    /// While a pause is pending the dossier is judged as at the request (the clock stands still).
    pub fn open_at(&self, t: i64) -> Timeliness {
        if self.late_open_at(t) {
            Timeliness::OpenLate
        } else {
            Timeliness::OpenInTime
        }
    }

    /// Whether a dossier open at `t` is late then.
    pub fn late_open_at(&self, t: i64) -> bool {
        if self.repeated {
            return true;
        }
        let Some(due) = self.due else {
            return false;
        };
        let t = self.pending_since.map_or(t, |since| since.min(t));
        vietnam_day(t) > vietnam_day(due + self.paused)
    }

    /// The first instant at which a dossier open with this clock, and with no pause pending, is late: the start
    /// of the day after its due date. `None` when it can never become late by the passing of time alone.
    pub fn late_from(&self) -> Option<i64> {
        if self.repeated || self.pending_since.is_some() {
            return None;
        }
        let due = self.due?;
        Some(crate::calendar::vietnam_day_start(
            vietnam_day(due + self.paused) + 1,
        ))
    }
}
