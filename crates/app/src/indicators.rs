//! The indicator service: a live engine that follows the log, snapshots of it on disk, and tables for any
//! position (`as_of`) or instant (`known_at`), replayed from the nearest snapshot.
//!
//! Used by the HTTP handlers and by `casetrail report` alike.

use base64::Engine as _;
use chrono::Utc;
use domain::calendar::Cut;
use domain::{AgencyCode, KnownAt, Period, StoredEvent};
use projections::indicators::render::{ProfileName, ScorecardName, Stamp, StampSettings, Table};
use projections::indicators::scorecard::Scorecard;
use projections::indicators::{Engine, FoldError, Group, Profile, Profiles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use store::Store;

/// Bumped whenever the engine's stored shape or its meaning changes: older snapshots are then ignored.
const SNAPSHOT_FORMAT: &str = "casetrail-indicators-5";

/// What the indicator service can go wrong with.
#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    /// A question out of its domain (no period, a position past the log's head).
    #[error("{0}")]
    Invalid(String),
    /// The log could not be read.
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// The engine could not fold an event (a gap, or a dropped dossier that could not be read back).
    #[error("{0}")]
    Fold(#[from] FoldError),
    /// A snapshot could not be written (the file system refused, or the engine did not encode).
    #[error("{0}")]
    Snapshot(String),
    /// The scorecard file could not be read.
    #[error("{0}")]
    ScorecardFile(String),
    /// The scorecard file is not a scorecard.
    #[error("{0}")]
    Scorecard(#[from] projections::indicators::scorecard::ScorecardError),
    /// A profile file could not be read, or is not a profile.
    #[error("{0}")]
    ProfileFile(String),
    /// The question names a profile the service does not offer.
    #[error("{0}")]
    UnknownProfile(String),
}

/// One question: periods (one, or a series), a grouping, an optional scope, and a point in history.
#[derive(Clone, Debug)]
pub struct Query {
    pub periods: Vec<Period>,
    pub group: Group,
    pub scope: Option<AgencyCode>,
    pub as_of: Option<u64>,
    pub known_at: Option<KnownAt>,
    /// The report profile's id; the default (`national`) when `None`.
    pub profile: Option<String>,
}

pub struct Answer {
    pub stamp: Stamp,
    pub tables: Vec<Table>,
    /// The profile the tables follow.
    pub profile: Profile,
    /// For rows by procedure field: each row's stand-in agency code's prefix (`F00003`) → the field's code and name
    /// (`F00000`: no field given). Empty otherwise.
    pub fields: BTreeMap<String, (String, Option<String>)>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    format: String,
    cut: Cut,
    position: u64,
    /// The audit root at `position`, base64: a snapshot of another log (or a rewritten one) is never used.
    root: String,
}

/// Why a snapshot file was not used.
enum Unusable {
    /// It could not be read now (it may be fine later).
    Unreadable(String),
    /// It is damaged, or of another format, cut or log.
    Foreign(String),
}

/// Snapshots of the engine, one file per position, in `<data>/indicator-snapshots/<cut>/`.
pub struct Snapshots {
    /// `<data>/indicator-snapshots`.
    base: PathBuf,
    dir: PathBuf,
    /// Write one whenever the live engine passes a multiple of this many events.
    pub every_events: u64,
}

impl Snapshots {
    pub fn new(data: &Path, cut: Cut, every_events: u64) -> Snapshots {
        let base = data.join("indicator-snapshots");
        Snapshots {
            dir: base.join(cut.to_string()),
            base,
            every_events: every_events.max(1),
        }
    }

    /// The snapshots of another cut, beside these.
    pub fn of_cut(&self, cut: Cut) -> Snapshots {
        Snapshots {
            dir: self.base.join(cut.to_string()),
            base: self.base.clone(),
            every_events: self.every_events,
        }
    }

    /// Stored snapshot positions, ascending.
    pub fn positions(&self) -> Vec<u64> {
        let mut out: Vec<u64> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".bin")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    fn path(&self, position: u64) -> PathBuf {
        self.dir.join(format!("{position:020}.bin"))
    }

    /// The latest usable snapshot at or before `at_most`. A file that cannot be read is skipped; one that is
    /// damaged, of another format, cut or log is skipped and removed (it is derived data, and useless here).
    pub fn nearest(&self, log: &dyn Store, cut: Cut, at_most: u64) -> Option<Engine> {
        for position in self.positions().into_iter().rev().filter(|p| *p <= at_most) {
            match self.load(log, cut, position) {
                Ok(engine) => return Some(engine),
                Err(Unusable::Unreadable(why)) => {
                    tracing::warn!(position, %why, "indicator snapshot skipped")
                }
                Err(Unusable::Foreign(why)) => {
                    tracing::warn!(position, %why, "indicator snapshot removed");
                    let _ = std::fs::remove_file(self.path(position));
                }
            }
        }
        None
    }

    /// Whether the snapshot at `position` exists and can be used.
    pub fn usable(&self, log: &dyn Store, cut: Cut, position: u64) -> bool {
        self.load(log, cut, position).is_ok()
    }

    fn load(&self, log: &dyn Store, cut: Cut, position: u64) -> Result<Engine, Unusable> {
        let bytes =
            std::fs::read(self.path(position)).map_err(|e| Unusable::Unreadable(e.to_string()))?;
        let foreign = Unusable::Foreign;
        let (header, _): (SnapshotHeader, _) =
            postcard::take_from_bytes(&bytes).map_err(|e| foreign(e.to_string()))?;
        if header.format != SNAPSHOT_FORMAT || header.cut != cut || header.position != position {
            return Err(foreign(format!(
                "format {} for cut {} at {}",
                header.format, header.cut, header.position
            )));
        }
        let root = root_at(log, position).map_err(|e| Unusable::Unreadable(e.to_string()))?;
        if header.root != root {
            return Err(foreign("its audit root is not this log's".into()));
        }
        let (_, mut engine): (SnapshotHeader, Engine) =
            postcard::from_bytes(&bytes).map_err(|e| foreign(e.to_string()))?;
        if engine.position() != position || engine.cut() != cut {
            return Err(foreign("its engine is at another position".into()));
        }
        engine.after_restore();
        Ok(engine)
    }

    /// Writes a snapshot durably (temporary file, fsync, rename).
    pub fn save(&self, log: &dyn Store, engine: &Engine) -> Result<(), IndicatorError> {
        self.write(log, engine).map_err(IndicatorError::Snapshot)
    }

    fn write(&self, log: &dyn Store, engine: &Engine) -> Result<(), String> {
        let position = engine.position();
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT.into(),
            cut: engine.cut(),
            position,
            root: root_at(log, position).map_err(|e| e.to_string())?,
        };
        let bytes = postcard::to_allocvec(&(header, engine)).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let temporary = self.dir.join(format!(".{position:020}.tmp"));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&temporary).map_err(|e| e.to_string())?;
            f.write_all(&bytes).map_err(|e| e.to_string())?;
            f.sync_all().map_err(|e| e.to_string())?;
        }
        std::fs::rename(&temporary, self.path(position)).map_err(|e| e.to_string())?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn root_at(log: &dyn Store, position: u64) -> Result<String, store::StoreError> {
    let root = log.root_at(position)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(root.0))
}

/// Reads a dossier's events before a position back from the log, for a dossier the engine dropped.
pub fn loader(log: &dyn Store) -> impl FnMut(&str, u64) -> Result<Vec<StoredEvent>, String> + '_ {
    move |code, before| log.stream_before(code, before).map_err(|e| e.to_string())
}

/// Folds the log's events after the engine's position, up to `to`.
pub fn replay(engine: &mut Engine, log: &dyn Store, to: u64) -> Result<(), IndicatorError> {
    let mut load = loader(log);
    let mut failure = None;
    log.replay_to(engine.position(), to, &mut |e: StoredEvent| {
        if failure.is_none() {
            if let Err(why) = engine.apply(&e, &mut load) {
                failure = Some(why);
            }
        }
    })?;
    failure.map_or(Ok(()), |e| Err(e.into()))
}

/// Folds the log's events up to `to`, writing a snapshot at each multiple of `snapshots.every_events` it reaches.
/// A snapshot that cannot be written is logged, not fatal: the engine is right without it.
fn replay_saving(
    engine: &mut Engine,
    log: &dyn Store,
    to: u64,
    snapshots: &Snapshots,
) -> Result<(), IndicatorError> {
    let every = snapshots.every_events;
    while engine.position() < to {
        let (before, next) = (engine.position(), (engine.position() / every + 1) * every);
        replay(engine, log, next.min(to))?;
        if engine.position() == before {
            return Err(IndicatorError::Invalid(format!(
                "the log ends before position {to}"
            )));
        }
        if engine.position() == next {
            if let Err(why) = snapshots.save(log, engine) {
                tracing::warn!(%why, "could not write an indicator snapshot");
            }
        }
    }
    Ok(())
}

pub struct Indicators {
    live: RwLock<Engine>,
    pub card: Scorecard,
    pub cut: Cut,
    pub snapshots: Snapshots,
    /// The report profiles offered: the built-in ones, then those of `settings.profiles`.
    pub profiles: Profiles,
    /// An engine per other cut a profile asked for: made on first use (from its nearest snapshot), then carried
    /// forward by each question, so only the first question of a cut replays the whole log. Each behind its own
    /// lock: questions under one cut wait for each other, never for another cut's.
    others: Mutex<BTreeMap<Cut, std::sync::Arc<Mutex<Engine>>>>,
}

impl Indicators {
    /// The live engine, from the latest snapshot plus the events after it (or from position 1). Writes a snapshot
    /// when it had to fold more than `snapshots.every_events` events.
    /// The service opened as `settings` say: their cut, scorecard and snapshot spacing, snapshots in their data
    /// directory.
    pub fn open_for(
        log: &dyn Store,
        settings: &crate::Settings,
    ) -> Result<Indicators, IndicatorError> {
        let card = scorecard(settings.scorecard.as_deref())?;
        let snapshots =
            Snapshots::new(&settings.data, settings.cut, settings.snapshot_every_events);
        let mut service = Indicators::open(log, settings.cut, card, snapshots)?;
        service.profiles = profiles(settings.profiles.as_deref())?;
        Ok(service)
    }

    pub fn open(
        log: &dyn Store,
        cut: Cut,
        card: Scorecard,
        snapshots: Snapshots,
    ) -> Result<Indicators, IndicatorError> {
        let head = log.head().size;
        let mut engine = snapshots
            .nearest(log, cut, head)
            .unwrap_or_else(|| Engine::new(cut));
        let from = engine.position();
        replay(&mut engine, log, head)?;
        if engine.position() - from >= snapshots.every_events {
            if let Err(why) = snapshots.save(log, &engine) {
                tracing::warn!(%why, "could not write an indicator snapshot");
            }
        }
        tracing::info!(
            position = engine.position(),
            from_snapshot = from,
            dossiers_in_memory = engine.dossiers_in_memory(),
            "indicator tables ready"
        );
        Ok(Indicators {
            live: RwLock::new(engine),
            card,
            cut,
            snapshots,
            profiles: Profiles::built_in(),
            others: Mutex::new(BTreeMap::new()),
        })
    }

    /// The profile a question names, or the default.
    pub fn profile(&self, id: Option<&str>) -> Result<&Profile, IndicatorError> {
        self.profiles
            .require(id)
            .map_err(IndicatorError::UnknownProfile)
    }

    /// The engine of another cut than the live one, at a position: the one kept for that cut carried forward when
    /// it is not past the position (writing that cut's snapshots as it passes each multiple of
    /// `snapshots.every_events`), else the cut's nearest snapshot plus a replay.
    fn other_engine_at(
        &self,
        log: &dyn Store,
        cut: Cut,
        position: u64,
    ) -> Result<Engine, IndicatorError> {
        let snapshots = self.snapshots.of_cut(cut);
        let slot = self
            .others
            .lock()
            .expect("indicator engines lock")
            .entry(cut)
            .or_insert_with(|| std::sync::Arc::new(Mutex::new(Engine::new(cut))))
            .clone();
        let mut kept = slot.lock().expect("indicator engine lock");
        if kept.position() == 0 {
            if let Some(nearest) = snapshots.nearest(log, cut, position) {
                *kept = nearest;
            }
        }
        if kept.position() <= position {
            replay_saving(&mut kept, log, position, &snapshots)?;
            return Ok(kept.clone());
        }
        drop(kept);
        let mut engine = snapshots
            .nearest(log, cut, position)
            .unwrap_or_else(|| Engine::new(cut));
        replay(&mut engine, log, position)?;
        Ok(engine)
    }

    pub fn position(&self) -> u64 {
        self.live.read().expect("indicator lock").position()
    }

    /// Folds newly committed events into the live engine; writes a snapshot at every multiple of
    /// `snapshots.every_events`. Called by the follower, never by the writer.
    pub fn fold(&self, log: &dyn Store, events: &[StoredEvent]) -> Result<(), IndicatorError> {
        let mut due = None;
        let folded = {
            let mut engine = self.live.write().expect("indicator lock");
            let mut load = loader(log);
            events.iter().try_for_each(|e| {
                let before = engine.position();
                engine.apply(e, &mut load)?;
                if engine.position() / self.snapshots.every_events
                    > before / self.snapshots.every_events
                {
                    due = Some(engine.clone());
                }
                Ok::<(), FoldError>(())
            })
        };
        folded?;
        if let Some(engine) = due {
            // Written outside the lock: queries and the follower go on meanwhile.
            self.snapshots.save(log, &engine)?;
        }
        Ok(())
    }

    /// Folds the live engine forward to `position` when it stands before it (the follower folds commits a
    /// moment after they land, `follow::FOLD_DEFER`): a question about a position just written is answered by the
    /// live engine, with no copy and no replay from a snapshot. The follower may fold the same events meanwhile;
    /// the engine takes each once.
    fn fold_to(&self, log: &dyn Store, position: u64) -> Result<(), IndicatorError> {
        loop {
            let at = self.position();
            if at >= position {
                return Ok(());
            }
            let events = log.read_after(at, (position - at).min(1_000) as usize)?;
            if events.is_empty() {
                return Err(IndicatorError::Invalid(format!(
                    "the log ends at {at}, before position {position}"
                )));
            }
            self.fold(log, &events)?;
        }
    }

    /// Writes a snapshot of the live engine unless the latest one is at its position already (at a stop).
    pub fn save_if_newer(&self, log: &dyn Store) -> Result<(), IndicatorError> {
        let engine = self.live.read().expect("indicator lock").clone();
        let latest = self.snapshots.positions().last().copied().unwrap_or(0);
        if engine.position() > latest {
            self.snapshots.save(log, &engine)?;
        }
        Ok(())
    }

    /// The engine as of a position: the live one when it is there; the live one carried forward when it is behind
    /// (it follows the log asynchronously); else the nearest snapshot plus replay.
    fn engine_at(&self, log: &dyn Store, position: u64) -> Result<Engine, IndicatorError> {
        let behind = {
            let live = self.live.read().expect("indicator lock");
            if live.position() == position {
                return Ok(live.clone());
            }
            (live.position() < position).then(|| live.clone())
        };
        let mut engine = match behind {
            Some(live) => live,
            None => self
                .snapshots
                .nearest(log, self.cut, position)
                .unwrap_or_else(|| Engine::new(self.cut)),
        };
        replay(&mut engine, log, position)?;
        Ok(engine)
    }

    /// The last position known at `t` (0 when none): recording times never decrease along positions.
    fn position_known_at(log: &dyn Store, t: KnownAt, size: u64) -> Result<u64, IndicatorError> {
        let (mut low, mut high) = (0u64, size); // invariant: position `low` known by t (0 = none), `high + 1` not
        while low < high {
            let middle = low + (high - low).div_ceil(2);
            let e = log.event(middle)?.ok_or_else(|| {
                store::StoreError::IndexMismatch(format!("position {middle} is missing"))
            })?;
            if t.counts(&e.recorded_at) {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        Ok(low)
    }

    pub fn answer(&self, log: &dyn Store, q: &Query) -> Result<Answer, IndicatorError> {
        if q.periods.is_empty() {
            return Err(IndicatorError::Invalid("no period asked for".into()));
        }
        let profile = self.profile(q.profile.as_deref())?;
        let cut = profile.cut_or(self.cut);
        // The committed head, not the live engine's position: the engine follows commits asynchronously, and a
        // question about anything acknowledged must be answered for exactly that, never refused or cut short.
        let mut size = log.head().size;
        if let Some(p) = q.as_of.filter(|p| *p > size) {
            // Another node may have acknowledged it: the store's own head decides.
            size = log.fresh_head()?.size;
            if p > size {
                return Err(IndicatorError::Invalid(format!(
                    "as_of {p} is beyond the log's last position, {size}"
                )));
            }
        }
        let mut position = q.as_of.unwrap_or(size);
        if let Some(t) = q.known_at {
            position = position.min(Self::position_known_at(log, t, size)?);
        }
        // A question at or after where the live engine stands folds it forward to its position first (a live one:
        // the head as it was when asked); one it has passed is answered from a snapshot and a replay.
        let live_question = q.as_of.is_none() && q.known_at.is_none();
        if cut == self.cut && q.known_at.is_none() {
            if let Err(why) = self.fold_to(log, position) {
                if !live_question {
                    return Err(why);
                }
                // A live question is answered where the engine stands; its stamp says which position that is.
                tracing::warn!(%why, "the live indicator engine could not catch up for a question");
            }
        }
        let answer_from = |engine: &Engine, position: u64| -> Result<Answer, IndicatorError> {
            let root = root_at(log, position)?;
            let tables = q
                .periods
                .iter()
                .map(|&period| Table {
                    period,
                    rows: engine.table_under(period, q.group, q.scope.as_ref(), profile.defs),
                })
                .collect();
            let stamp = Stamp {
                position,
                root,
                recorded_at: engine.recorded_at(),
                judged_at: chrono::DateTime::from_timestamp(engine.horizon(), 0),
                as_of: q.as_of,
                known_at: q.known_at,
                computed_at: Utc::now(),
                settings: StampSettings {
                    cut,
                    scorecard: ScorecardName {
                        name: self.card.name.clone(),
                        sha256: self.card.sha256.clone(),
                    },
                    profile: ProfileName::of(profile),
                },
            };
            Ok(Answer {
                stamp,
                tables,
                profile: profile.clone(),
                fields: BTreeMap::new(),
            })
        };
        if cut != self.cut {
            let mut engine = self.other_engine_at(log, cut, position)?;
            if let Some(t) = q.known_at {
                engine.advance(t.last_second());
            }
            return answer_from(&engine, position);
        }
        if q.known_at.is_none() {
            let live = self.live.read().expect("indicator lock");
            let at = live.position();
            // A live question is answered by the live engine where it stands (at or past the head when asked,
            // unless it could not catch up), and its stamp says which position that is. A question about a
            // position is answered by it only when it stands exactly there.
            if at == position || live_question {
                return answer_from(&live, at);
            }
        }
        let mut engine = self.engine_at(log, position)?;
        if let Some(t) = q.known_at {
            engine.advance(t.last_second());
        }
        answer_from(&engine, position)
    }
}

/// The scorecard in a TOML file, or the built-in default.
pub fn scorecard(path: Option<&Path>) -> Result<Scorecard, IndicatorError> {
    match path {
        None => Ok(Scorecard::default_card()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| IndicatorError::ScorecardFile(format!("{}: {e}", path.display())))?;
            Ok(Scorecard::parse(&text)?)
        }
    }
}

/// The official form of every table of an answer (`by` agency: the answer's rows are agencies; `by` level: levels;
/// `by` field: the stand-in rows of [`Indicators::form_answer`], named by their fields here).
pub fn forms(
    answer: &Answer,
    by: projections::indicators::form::FormBy,
    lang: projections::indicators::render::Lang,
) -> Result<Vec<projections::indicators::form::FormTable>, projections::indicators::form::FormError>
{
    use projections::indicators::render::Lang;
    let mut forms: Vec<_> = answer
        .tables
        .iter()
        .map(|t| projections::indicators::form::FormTable::build(t, by, lang, answer.profile.defs))
        .collect::<Result<_, _>>()?;
    for line in forms.iter_mut().flat_map(|f| f.lines.iter_mut()) {
        let Some(prefix) = line.agency.as_deref().and_then(|a| a.split('.').next()) else {
            continue;
        };
        if let Some((code, name)) = answer.fields.get(prefix) {
            line.name = match (code.is_empty(), name, lang) {
                (true, _, Lang::Vi) => "Chưa xác định lĩnh vực".into(),
                (true, _, Lang::En) => "Field not given".into(),
                (false, Some(name), _) => format!("{name} ({code})"),
                (false, None, _) => code.clone(),
            };
            line.field = (!code.is_empty()).then(|| code.clone());
            line.agency = None;
        }
    }
    Ok(forms)
}

/// The stand-in agency of a field at a level, in the tables by field (`F<field>.<level letter>`).
fn field_agency(field: usize, level: Option<domain::event::AgencyLevel>) -> AgencyCode {
    use domain::event::AgencyLevel;
    let letter = match level {
        Some(AgencyLevel::Province) => "P",
        Some(AgencyLevel::Department) => "D",
        Some(AgencyLevel::District) => "H",
        Some(AgencyLevel::Commune) => "X",
        None => "U",
    };
    // Zero-padded, so that the rows (in code order) are in the fields' order.
    AgencyCode::parse(&format!("{}.{letter}", field_prefix(field))).expect("a valid stand-in code")
}

/// The stand-in codes' first part for a field's number (0: no field given).
fn field_prefix(field: usize) -> String {
    format!("F{field:05}")
}

/// Stands for every agency outside the question's scope, in the tables by field; its rows are dropped.
const OUTSIDE: &str = "OUT";

impl Indicators {
    /// The answer a form `by` reads. By field, the tables' rows are (procedure field, level) pairs: the log up to
    /// the answer's position replayed into an engine of the answer's cut in which every dossier event's agency
    /// (and a transfer's destination) stands for the dossier's field at that agency's level, so that each count is
    /// made exactly as by agency and only regrouped. A dossier's field is its procedure's (the latest offer of the
    /// procedure naming one); its procedure is the one it has at that position, corrections included. With a
    /// scope, what happens at agencies outside it is left out, as by agency.
    pub fn form_answer(
        &self,
        log: &dyn Store,
        q: &Query,
        by: projections::indicators::form::FormBy,
    ) -> Result<Answer, IndicatorError> {
        let mut answer = self.answer(log, q)?;
        if by != projections::indicators::form::FormBy::Field {
            return Ok(answer);
        }
        let position = answer.stamp.position;
        // The first pass: the reference data, and each dossier's procedure, as at the position.
        let mut catalogue = projections::Catalogue::default();
        let mut procedure_of: std::collections::HashMap<
            domain::DossierCode,
            domain::ProcedureCode,
        > = std::collections::HashMap::new();
        let mut field_names: BTreeMap<String, String> = BTreeMap::new();
        log.replay_to(0, position, &mut |e: StoredEvent| {
            catalogue.apply(&e);
            if let domain::EventData::ProcedureOffered(o) = &e.event.data {
                if let (Some(code), Some(name)) = (&o.field, &o.field_name) {
                    field_names.insert(code.to_string(), name.to_string());
                }
            }
            let Some(d) = e.event.dossier.clone() else {
                return;
            };
            match &e.event.data {
                domain::EventData::Received(r) => {
                    procedure_of.insert(d, r.procedure.clone());
                }
                domain::EventData::Corrected(c) => {
                    if let Some(p) = &c.procedure {
                        procedure_of.insert(d, p.clone());
                    }
                }
                _ => {}
            }
        })?;
        // Each field's number, in the order of their codes, and its name as the latest offer naming it gives it.
        let mut field_codes: Vec<String> = procedure_of
            .values()
            .filter_map(|p| catalogue.field_of(p))
            .map(|(c, _)| c.to_string())
            .collect();
        field_codes.sort();
        field_codes.dedup();
        let index: std::collections::HashMap<&str, usize> = field_codes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i + 1))
            .collect();
        // A procedure's field number, worked out once per procedure.
        let mut procedure_field: std::collections::HashMap<&domain::ProcedureCode, usize> =
            std::collections::HashMap::new();
        for p in procedure_of.values() {
            procedure_field.entry(p).or_insert_with(|| {
                catalogue
                    .field_of(p)
                    .and_then(|(c, _)| index.get(c.as_str()).copied())
                    .unwrap_or(0)
            });
        }
        let dossier_field: std::collections::HashMap<&domain::DossierCode, usize> = procedure_of
            .iter()
            .map(|(d, p)| (d, procedure_field[p]))
            .collect();
        let field_number =
            |d: &domain::DossierCode| -> usize { dossier_field.get(d).copied().unwrap_or(0) };
        let stand_in = |field: usize, agency: &AgencyCode| -> AgencyCode {
            let inside = q
                .scope
                .as_ref()
                .is_none_or(|s| catalogue.in_scope(s, agency));
            if inside {
                field_agency(field, catalogue.agency(agency).map(|a| a.level))
            } else {
                AgencyCode::parse(OUTSIDE).expect("a valid code")
            }
        };
        // The second pass: the dossier events, each at its stand-in agency, after that agency's registration.
        let cut = answer.stamp.settings.cut;
        let mut engine = Engine::new(cut);
        let mut registered = std::collections::HashSet::new();
        let mut next = 0u64;
        let mut failure = None;
        // A dossier event at its stand-in agencies (a transfer's destination too).
        let at_stand_ins = |e: &StoredEvent| -> StoredEvent {
            let mut e = e.clone();
            if let Some(d) = e.event.dossier.clone() {
                let field = field_number(&d);
                if let Some(a) = &e.event.agency {
                    e.event.agency = Some(stand_in(field, a));
                }
                if let domain::EventData::Transferred(t) = &mut e.event.data {
                    t.to_agency = stand_in(field, &t.to_agency);
                }
            }
            e
        };
        log.replay_to(0, position, &mut |e: StoredEvent| {
            if failure.is_some() || !e.event.event_type().is_dossier_event() {
                return;
            }
            let Some(d) = e.event.dossier.as_ref() else {
                return;
            };
            let field = field_number(d);
            let mut agencies: Vec<&AgencyCode> = e.event.agency.iter().collect();
            if let domain::EventData::Transferred(t) = &e.event.data {
                agencies.push(&t.to_agency);
            }
            // The engine drops a closed dossier and reads it back for a later event (a correction): from the
            // log, at its stand-ins.
            let real = e.position;
            let mut reload = |code: &str, _: u64| -> Result<Vec<StoredEvent>, String> {
                let earlier = log.stream_before(code, real).map_err(|e| e.to_string())?;
                Ok(earlier.iter().map(&at_stand_ins).collect())
            };
            for real_agency in agencies {
                let code = stand_in(field, real_agency);
                if code.as_str() == OUTSIDE || !registered.insert(code.clone()) {
                    continue;
                }
                let Some(level) = catalogue.agency(real_agency).map(|a| a.level) else {
                    continue;
                };
                next += 1;
                let name = domain::Text::parse(code.as_str()).expect("a valid text");
                let registration = StoredEvent {
                    position: next,
                    version: 1,
                    recorded_at: e.recorded_at,
                    source: e.source.clone(),
                    event: domain::Event {
                        id: uuid_of(code.as_str()),
                        dossier: None,
                        agency: Some(code),
                        occurred_at: e.event.occurred_at,
                        data: domain::EventData::AgencyRegistered(
                            domain::event::AgencyRegistered {
                                name,
                                level,
                                parent: None,
                            },
                        ),
                    },
                };
                if let Err(why) = engine.apply(&registration, &mut reload) {
                    failure = Some(why);
                    return;
                }
            }
            next += 1;
            let stored = StoredEvent {
                position: next,
                ..at_stand_ins(&e)
            };
            if let Err(why) = engine.apply(&stored, &mut reload) {
                failure = Some(why);
            }
        })?;
        if let Some(why) = failure {
            return Err(why.into());
        }
        // Judged at the same instant as the answer's own tables.
        if let Some(judged) = answer.stamp.judged_at {
            engine.advance(judged.timestamp());
        }
        answer.tables = answer
            .tables
            .iter()
            .map(|t| Table {
                period: t.period,
                rows: engine
                    .table_under(t.period, Group::Agency, None, answer.profile.defs)
                    .into_iter()
                    .filter(|r| r.key.agency.as_ref().is_none_or(|a| a.as_str() != OUTSIDE))
                    .collect(),
            })
            .collect();
        answer.fields = std::iter::once((field_prefix(0), (String::new(), None)))
            .chain(field_codes.iter().enumerate().map(|(i, c)| {
                (
                    field_prefix(i + 1),
                    (c.clone(), field_names.get(c.as_str()).cloned()),
                )
            }))
            .collect();
        Ok(answer)
    }
}

/// A stand-in registration's id: derived from its code (it is never stored).
fn uuid_of(code: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, code.as_bytes())
}

/// `casetrail-form-<period>-<by>-<profile>-<position>`: what a downloaded form is called.
pub fn form_file_name(answer: &Answer, by: projections::indicators::form::FormBy) -> String {
    let period = answer
        .tables
        .first()
        .map_or(String::new(), |t| t.period.to_string());
    format!(
        "casetrail-form-{period}-{by}-{}-{}",
        answer.profile.id, answer.stamp.position
    )
}

/// The built-in report profiles, then every `*.toml` file of `dir` (in name order), each a profile.
pub fn profiles(dir: Option<&Path>) -> Result<Profiles, IndicatorError> {
    let mut all = Profiles::built_in();
    let Some(dir) = dir else {
        return Ok(all);
    };
    let failed = |e: String| IndicatorError::ProfileFile(format!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| failed(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for path in files {
        let named = |e: String| IndicatorError::ProfileFile(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).map_err(|e| named(e.to_string()))?;
        let profile = Profile::parse(&text).map_err(|e| named(e.to_string()))?;
        all.add(profile).map_err(|e| named(e.to_string()))?;
    }
    Ok(all)
}

/// The most periods one series may hold (twenty years of months).
pub const SERIES_PERIODS_MAX: usize = 240;

/// Every period from `from` to `to`: of one kind, in order, at most `SERIES_PERIODS_MAX`. The error is about `to`.
pub fn series(from: Period, to: Period) -> Result<Vec<Period>, String> {
    if from.kind() != to.kind() || from > to {
        return Err(format!(
            "{to} must be a period of the same kind as {from}, not before it"
        ));
    }
    let mut all = vec![from];
    while *all.last().expect("not empty") < to {
        if all.len() >= SERIES_PERIODS_MAX {
            return Err(format!(
                "a series holds at most {SERIES_PERIODS_MAX} periods"
            ));
        }
        all.push(all.last().expect("not empty").next());
    }
    Ok(all)
}
