//! One dossier's life as the indicators see it, and the facts it contributes to the tables.
//!
//! A dossier's contribution is a pure function of its life and of the judging instant `horizon` (the latest instant
//! the log knows of). The tables are the sum of every dossier's contribution, so an event is applied by taking
//! the dossier's old contribution out and putting the new one in: corrections, late events and a receipt moved to
//! another quarter need nothing special.

use super::scheme::{Scheme, Secs};
use chrono::{DateTime, FixedOffset};
use domain::deadline::Clock;
use domain::event::{Channel, EventData, OnlineLevel};
use domain::Timeliness;
use serde::{Deserialize, Serialize};

/// A table column a dossier can add to. The `Tail…` columns are not columns of the answer: an open dossier leaves
/// them as differences ("in time from this period on", "no longer in time from here", "late from here") whose sums
/// over every period so far are added to `OpenInTime` and `OpenLate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Col {
    Received,
    ReceivedCounter,
    ReceivedOnline,
    ReceivedPostal,
    Level3,
    Level4,
    Partial,
    Full,
    PostalReturned,
    PostalDossiers,
    Returned,
    ReturnedCounter,
    ReturnedOnline,
    ReturnedPostal,
    ResolvedEarly,
    ResolvedOnTime,
    ResolvedLate,
    OpenInTime,
    OpenLate,
    Withdrawn,
    TransferredIn,
    TransferredOut,
    /// Withdrawn, counted in the period its processing ended (its resolution, if that came first).
    WithdrawnAtEnd,
    /// Returned without a resolution (the return ended processing), by its verdict: a part of `Resolved…`.
    UnresolvedEarly,
    UnresolvedOnTime,
    UnresolvedLate,
    /// Open at the end of the period and waiting for documents, in time or late: a part of `Open…`.
    WaitingInTime,
    WaitingLate,
    /// Dossiers whose due date (moved by its pauses) falls in the period: met (processing ended by then), or
    /// missed (ended after it, or open and past it as the log knows).
    DueMet,
    DueMissed,
    TailInTime,
    TailInTimeEnd,
    TailLate,
    TailWaitingInTime,
    TailWaitingLate,
}

pub const COLS: usize = Col::TailWaitingLate as usize + 1;

/// Which use of a procedure a dossier shows (procedure coverage, indicators.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Use {
    Online,
    PostalReceive,
    PostalReturn,
}

/// One unit a dossier adds to the tables of one period scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Cell {
        agency: u32,
        period: i32,
        col: Col,
    },
    Used {
        agency: u32,
        period: i32,
        procedure: u32,
        usage: Use,
    },
}

/// On time or not, for a dossier whose processing ended, or for an open one at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Early,
    OnTime,
    Late,
}

/// The indicator-relevant life of one dossier. Agencies and procedures are interned by the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Life {
    /// The receiving agency: intake, return, resolution and open facts count there.
    pub agency: u32,
    pub holder: u32,
    pub procedure: u32,
    pub channel: Channel,
    pub level: Option<OnlineLevel>,
    pub received: Secs,
    pub due: Option<Secs>,
    /// Supplement pauses, oldest first; the last may still be pending.
    pub pauses: Vec<Pause>,
    /// When a second supplement was requested: from then on the dossier is late (Decision 766).
    pub second_request: Option<Secs>,
    /// (when, from, to) for every transfer.
    pub transfers: Vec<(Secs, u32, u32)>,
    pub resolved: Option<Secs>,
    pub returned: Option<(Secs, Channel)>,
    pub withdrawn: Option<Secs>,
    /// The latest `occurred_at` of its events: after it, nothing about the dossier changes by itself except that
    /// an open dossier may pass its due date.
    pub last_change: Secs,
}

/// One supplement pause: when documents were requested (to the microsecond) and received (to the second), and its
/// length as the dossier state measures it (the exact interval, in whole seconds), so that both judge with the same
/// total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    since_micros: i64,
    pub until: Option<Secs>,
    /// Whole seconds from request to receipt (0 while pending).
    length: Secs,
}

impl Pause {
    /// The second the documents were requested in.
    pub fn since(&self) -> Secs {
        self.since_micros.div_euclid(1_000_000)
    }
}

/// How an open dossier stands from `last_change` on, for ever (until a new event).
enum Tail {
    Constant(bool),
    /// In time until the instant, late from it.
    LateFrom(Secs),
}

impl Life {
    pub fn received(agency: u32, procedure: u32, at: Secs, r: &domain::event::Received) -> Life {
        Life {
            agency,
            holder: agency,
            procedure,
            channel: r.channel,
            level: r.online_level,
            received: at,
            due: r.due_at.as_ref().map(|d| d.timestamp()),
            pauses: Vec::new(),
            second_request: None,
            transfers: Vec::new(),
            resolved: None,
            returned: None,
            withdrawn: None,
            last_change: at,
        }
    }

    /// Folds one later event of the dossier, which occurred at `occurred`. `intern` maps agency and procedure codes
    /// to the engine's numbers.
    pub fn apply(
        &mut self,
        occurred: &DateTime<FixedOffset>,
        data: &EventData,
        mut intern: impl FnMut(Code<'_>) -> u32,
    ) {
        let at = occurred.timestamp();
        self.last_change = self.last_change.max(at);
        match data {
            EventData::Transferred(t) => {
                let to = intern(Code::Agency(t.to_agency.as_str()));
                self.transfers.push((at, self.holder, to));
                self.holder = to;
            }
            EventData::SupplementRequested(_) => {
                if !self.pauses.is_empty() && self.second_request.is_none() {
                    self.second_request = Some(at);
                }
                self.pauses.push(Pause {
                    until: None,
                    since_micros: occurred.timestamp_micros(),
                    length: 0,
                });
            }
            EventData::SupplementReceived(_) => {
                if let Some(p @ Pause { until: None, .. }) = self.pauses.last_mut() {
                    p.until = Some(at);
                    // As `domain::DossierState` counts it: the exact interval, truncated to whole seconds.
                    p.length = ((occurred.timestamp_micros() - p.since_micros) / 1_000_000).max(0);
                }
            }
            EventData::DueExtended(d) => self.due = Some(d.new_due_at.timestamp()),
            EventData::Resolved(_) => self.resolved = Some(at),
            EventData::Returned(r) => self.returned = Some((at, r.channel)),
            EventData::Withdrawn(_) => self.withdrawn = Some(at),
            EventData::Corrected(c) => {
                if let Some(p) = &c.procedure {
                    self.procedure = intern(Code::Procedure(p.as_str()));
                }
                (self.channel, self.level) = c.channel_and_level(self.channel, self.level);
                if let Some(r) = &c.received_at {
                    self.received = r.timestamp();
                }
                if let Some(d) = &c.due_at {
                    self.due = Some(d.timestamp());
                }
            }
            _ => {}
        }
    }

    /// Returned or withdrawn: only corrections may follow.
    pub fn is_closed(&self) -> bool {
        self.returned.is_some() || self.withdrawn.is_some()
    }

    /// The end of processing: resolution, else return, else withdrawal.
    pub fn ended(&self) -> Option<Secs> {
        self.resolved
            .or(self.returned.map(|(t, _)| t))
            .or(self.withdrawn)
    }

    /// Total length of the supplement pauses that ended by `t`.
    fn paused_by(&self, t: Secs) -> Secs {
        self.pauses
            .iter()
            .filter(|p| p.until.is_some_and(|u| u <= t))
            .map(|p| p.length)
            .sum()
    }

    /// The on-time clock as the dossier stood at `t`: the pauses ended by then, the one running then, and whether
    /// documents had been asked for twice by then. The rule itself is `domain::deadline`'s, the dossier state's.
    pub fn clock_at(&self, t: Secs) -> Clock {
        Clock {
            due: self.due,
            paused: self.paused_by(t),
            pending_since: self
                .pauses
                .iter()
                .find(|p| p.since() <= t && p.until.is_none_or(|u| u > t))
                .map(|p| p.since()),
            repeated: self.second_request.is_some_and(|s| s <= t),
        }
    }

    /// How a dossier whose processing ended at `end` stands (early, on time or late).
    pub fn class_at_end(&self, end: Secs) -> Class {
        match self.clock_at(end).at_end(end) {
            Timeliness::Early => Class::Early,
            Timeliness::OnTime => Class::OnTime,
            _ => Class::Late,
        }
    }

    /// Whether the dossier, open at `t`, is late then.
    pub fn late_at(&self, t: Secs) -> bool {
        self.clock_at(t).late_open_at(t)
    }

    /// How the dossier stands at every instant from `last_change` on, while no new event arrives.
    fn tail(&self) -> Tail {
        let clock = self.clock_at(self.last_change);
        match clock.late_from() {
            Some(x) => Tail::LateFrom(x),
            None => Tail::Constant(clock.late_open_at(self.last_change)),
        }
    }

    /// When the dossier's standing next changes by the passing of time alone, if that is after `horizon`.
    pub fn wakes_at(&self, horizon: Secs) -> Option<Secs> {
        if self.ended().is_some() {
            return None;
        }
        match self.tail() {
            Tail::LateFrom(x) if x > horizon => Some(x),
            _ => None,
        }
    }

    /// Every fact the dossier contributes to the tables of `scheme`, judged with the log knowing up to `horizon`.
    pub fn facts(&self, scheme: &Scheme, horizon: Secs, mut emit: impl FnMut(Fact)) {
        let agency = self.agency;
        let mut cell = |period: i32, col: Col| {
            emit(Fact::Cell {
                agency,
                period,
                col,
            })
        };
        let received = scheme.index(self.received);
        cell(received, Col::Received);
        cell(
            received,
            match self.channel {
                Channel::Counter => Col::ReceivedCounter,
                Channel::Online => Col::ReceivedOnline,
                Channel::Postal => Col::ReceivedPostal,
            },
        );
        if self.channel == Channel::Online {
            if let Some(level) = self.level {
                cell(
                    received,
                    match level {
                        OnlineLevel::Level3 => Col::Level3,
                        OnlineLevel::Level4 => Col::Level4,
                        OnlineLevel::Partial => Col::Partial,
                        OnlineLevel::Full => Col::Full,
                    },
                );
            }
        }
        let returned_by_post = matches!(self.returned, Some((_, Channel::Postal)));
        if self.channel == Channel::Postal || returned_by_post {
            cell(received, Col::PostalDossiers);
        }
        if let Some((at, channel)) = self.returned {
            let period = scheme.index(at);
            cell(period, Col::Returned);
            cell(
                period,
                match channel {
                    Channel::Counter => Col::ReturnedCounter,
                    Channel::Online => Col::ReturnedOnline,
                    Channel::Postal => Col::ReturnedPostal,
                },
            );
            if channel == Channel::Postal {
                cell(period, Col::PostalReturned);
            }
        }
        match (self.withdrawn, self.ended()) {
            (Some(at), end) => {
                cell(scheme.index(at), Col::Withdrawn);
                cell(scheme.index(end.unwrap_or(at)), Col::WithdrawnAtEnd);
            }
            (None, Some(end)) => {
                let class = self.class_at_end(end);
                let period = scheme.index(end);
                cell(
                    period,
                    match class {
                        Class::Early => Col::ResolvedEarly,
                        Class::OnTime => Col::ResolvedOnTime,
                        Class::Late => Col::ResolvedLate,
                    },
                );
                if self.resolved.is_none() {
                    cell(
                        period,
                        match class {
                            Class::Early => Col::UnresolvedEarly,
                            Class::OnTime => Col::UnresolvedOnTime,
                            Class::Late => Col::UnresolvedLate,
                        },
                    );
                }
                if let Some(due) = self.due {
                    let clock = self.clock_at(end);
                    let pending = clock.pending_since.map_or(0, |since| (end - since).max(0));
                    let met = class != Class::Late;
                    cell(
                        scheme.index(due + clock.paused + pending),
                        if met { Col::DueMet } else { Col::DueMissed },
                    );
                }
            }
            (None, None) => {}
        }
        // Open at the end of each period from receipt until processing ended; judged at the period's last second.
        let mut open_at_end = |period: i32| {
            let t = scheme.end(period) - 1;
            let clock = self.clock_at(t);
            let late = clock.late_open_at(t);
            cell(period, if late { Col::OpenLate } else { Col::OpenInTime });
            if clock.pending_since.is_some() {
                cell(
                    period,
                    if late {
                        Col::WaitingLate
                    } else {
                        Col::WaitingInTime
                    },
                );
            }
        };
        match self.ended() {
            Some(end) => {
                for period in received..scheme.index(end) {
                    open_at_end(period);
                }
            }
            None => {
                let tail_from = scheme.index(self.last_change).max(received);
                for period in received..tail_from {
                    open_at_end(period);
                }
                let tail_col = |late: bool| if late { Col::TailLate } else { Col::TailInTime };
                let waiting = self.pauses.last().is_some_and(|p| p.until.is_none());
                let tail = self.tail();
                // Missed its due date, as the log knows at `horizon` (a timer recounts it when that changes).
                let late_now = match tail {
                    Tail::Constant(late) => late,
                    Tail::LateFrom(x) => x <= horizon,
                };
                if let (Some(due), true) = (self.due, late_now) {
                    cell(
                        scheme.index(due + self.paused_by(self.last_change)),
                        Col::DueMissed,
                    );
                }
                match tail {
                    Tail::Constant(late) => {
                        cell(tail_from, tail_col(late));
                        if waiting {
                            let col = if late {
                                Col::TailWaitingLate
                            } else {
                                Col::TailWaitingInTime
                            };
                            cell(tail_from, col);
                        }
                    }
                    Tail::LateFrom(x) if x <= self.last_change => cell(tail_from, Col::TailLate),
                    Tail::LateFrom(x) => {
                        cell(tail_from, Col::TailInTime);
                        if x <= horizon {
                            cell(scheme.index(x), Col::TailLate);
                            // The same period loses the in-time unit: a negative difference, emitted as its own
                            // fact so that retracting mirrors adding.
                            cell(scheme.index(x), Col::TailInTimeEnd);
                        }
                    }
                }
            }
        }
        for &(at, from, to) in &self.transfers {
            let period = scheme.index(at);
            emit(Fact::Cell {
                agency: from,
                period,
                col: Col::TransferredOut,
            });
            emit(Fact::Cell {
                agency: to,
                period,
                col: Col::TransferredIn,
            });
        }
        let used = |period: i32, usage: Use| Fact::Used {
            agency,
            period,
            procedure: self.procedure,
            usage,
        };
        match self.channel {
            Channel::Online => emit(used(received, Use::Online)),
            Channel::Postal => emit(used(received, Use::PostalReceive)),
            Channel::Counter => {}
        }
        if let Some((at, Channel::Postal)) = self.returned {
            emit(used(scheme.index(at), Use::PostalReturn));
        }
    }
}

/// A code to intern.
pub enum Code<'a> {
    Agency(&'a str),
    Procedure(&'a str),
}
