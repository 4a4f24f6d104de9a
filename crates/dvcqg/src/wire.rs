//! The sync's requests, read: `{session, madonvi, service, isUpdating, data}`, one or an array. Only the fields
//! casetrail needs are read, into typed records; every other field is dropped here, before anything could store
//! it, and named in the answer (personal ones apart).

use crate::mapping::{Mapping, Meaning, Unit};
use domain::event::{Applicant, Channel, OnlineLevel};
use domain::{AgencyCode, DossierCode, Instant, ProcedureCode};
use serde_json::{Map, Value};

/// The three services the adapter speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// `DongBoHoSoMC`: a dossier as the one-stop system has it now.
    Upsert,
    /// `CapNhatTienDoHoSoMC`: one processing step.
    Step,
    /// `TraCuuHoSo`: is this dossier known, and in what state.
    Lookup,
}

impl Service {
    pub fn name(&self) -> &'static str {
        match self {
            Service::Upsert => "DongBoHoSoMC",
            Service::Step => "CapNhatTienDoHoSoMC",
            Service::Lookup => "TraCuuHoSo",
        }
    }
}

/// A service as a client names it: the portal's three, or the names a provincial LGSP gateway gives them (one
/// URL per service: `ThemMoi` a new dossier, `CapNhat` an update, `DongBoTienTrinh` a step). Returns the portal's
/// name and what the gateway name says of `isUpdating`.
pub fn service_named(name: &str) -> Option<(&'static str, Option<bool>)> {
    Some(match name {
        "DongBoHoSoMC" => ("DongBoHoSoMC", None),
        "CapNhatTienDoHoSoMC" => ("CapNhatTienDoHoSoMC", None),
        "TraCuuHoSo" => ("TraCuuHoSo", None),
        "ThemMoi" => ("DongBoHoSoMC", Some(false)),
        "CapNhat" => ("DongBoHoSoMC", Some(true)),
        "DongBoTienTrinh" => ("CapNhatTienDoHoSoMC", None),
        _ => return None,
    })
}

/// The names [`service_named`] knows, for messages and documents.
pub const SERVICE_NAMES: &[&str] = &[
    "DongBoHoSoMC",
    "CapNhatTienDoHoSoMC",
    "TraCuuHoSo",
    "ThemMoi",
    "CapNhat",
    "DongBoTienTrinh",
];

/// What a client that syncs through a provincial gateway says outside its body: the service (in the URL's path
/// or query), `madonvi` and `isUpdating` (in the query).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gateway {
    /// A name [`service_named`] knows.
    pub service: Option<String>,
    pub madonvi: Option<String>,
    pub is_updating: Option<bool>,
}

impl Gateway {
    pub fn is_empty(&self) -> bool {
        *self == Gateway::default()
    }
}

/// A body in the portal's form: `body` as it is when the gateway says nothing; else the gateway's form, a bare
/// array of dossiers (or one), made one request naming the gateway's service, `madonvi` and `isUpdating`. A body
/// of requests (objects with `data`) sent to a gateway URL gets what the gateway says wherever it says nothing.
pub fn in_portal_form(body: Value, gateway: &Gateway) -> Value {
    if gateway.is_empty() {
        return body;
    }
    let (service, implied) = gateway
        .service
        .as_deref()
        .and_then(service_named)
        .map_or((None, None), |(s, u)| (Some(s), u));
    let is_updating = gateway.is_updating.or(implied);
    let fill = |mut o: Map<String, Value>| {
        if let Some(s) = service {
            o.entry("service").or_insert(Value::from(s));
        }
        if let Some(m) = &gateway.madonvi {
            o.entry("madonvi").or_insert(Value::from(m.as_str()));
        }
        if let Some(u) = is_updating {
            o.entry("isUpdating")
                .or_insert(Value::from(if u { "True" } else { "False" }));
        }
        Value::Object(o)
    };
    let is_request = |v: &Value| v.get("data").is_some() || v.get("service").is_some();
    match body {
        Value::Array(items) if !items.is_empty() && items.iter().all(is_request) => Value::Array(
            items
                .into_iter()
                .map(|v| match v {
                    Value::Object(o) => fill(o),
                    other => other,
                })
                .collect(),
        ),
        Value::Object(o) if is_request(&Value::Object(o.clone())) => fill(o),
        dossiers => {
            let mut o = Map::new();
            o.insert("data".into(), dossiers);
            fill(o)
        }
    }
}

/// Why something could not be taken: the JSON path of the field, what is wrong, and of which kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    pub kind: ProblemKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The request itself: a field missing, unreadable, or a code the mapping does not know.
    Invalid,
    /// A step for a dossier the log does not have yet.
    NotFound,
    /// The request contradicts the log where the events contract allows no correction.
    Conflict,
    /// A new fact dated before the log's last event of its dossier: the log keeps a dossier's events in time
    /// order, so it cannot be put in (a step that comes after a later one).
    OutOfOrder,
}

impl Problem {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            kind: ProblemKind::Invalid,
        }
    }
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            kind: ProblemKind::Conflict,
        }
    }
    pub fn out_of_order(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
            kind: ProblemKind::OutOfOrder,
        }
    }
}

/// Fields that identify or describe a person, or carry free text or files that may: dropped, and named in the
/// answer as personal. Any field the adapter does not read is dropped too; these are the ones it says so of.
pub const PERSONAL: &[&str] = &[
    "ChuHoSo",
    "HoTen",
    "TenNguoiNop",
    "SoDienThoai",
    "DienThoai",
    "Email",
    "Fax",
    "DiaChi",
    "DiaChiThuongTru",
    "DiaChiLienHe",
    "NgaySinh",
    "GioiTinh",
    "SoCMND",
    "CMND",
    "CCCD",
    "SoCCCD",
    "SoDinhDanh",
    "SoGiayTo",
    "MaDoiTuong",
    "ThongTinKhac",
    "TrichYeuHoSo",
    "GhiChu",
    "NguoiXuLy",
    "ChucDanh",
    "NoiDungXuLy",
    "NguoiYeuCauBoSung",
    "NguoiTiepNhanBoSung",
    "NoiDungBoSung",
    "ThongTinTiepNhan",
    "ThongTinTra",
    "TaiLieuNop",
    "DanhSachTepDinhKemKhac",
    "DanhSachGiayToKetQua",
    "DanhSachGiayToBoSung",
    "DanhSachLePhi",
    "DanhSachLePhiBoSung",
    "NguoiNhan",
    "NguoiNhanKetQua",
    "DiaChiNhan",
    "DiaChiNhanKetQua",
    "SoDienThoaiNhan",
    "MaSoThue",
    "TenDoanhNghiep",
    "SoGiayPhep",
    "NgayCapCMND",
    "NoiCapCMND",
];

/// Parts of names that mark a field as personal wherever they appear (`SoGiayToChuHoSo`, `DinhDanhCHS`,
/// `DiaChiNguoiNop`, `EmailChuHoSo`…): the portal's one-stop systems compose names from these, and a field one of
/// them names is an identity, contact or address value, or the holder's.
pub const PERSONAL_PARTS: &[&str] = &[
    "ChuHoSo",
    "CHS",
    "DinhDanh",
    "CMND",
    "CCCD",
    "HoChieu",
    "GiayTo",
    "HoTen",
    "NguoiNop",
    "NguoiNhan",
    "NguoiDaiDien",
    "DienThoai",
    "Email",
    "Fax",
    "DiaChi",
    "NgaySinh",
    "GioiTinh",
    "MaSoThue",
    "SoDinhDanh",
    "TenDoanhNghiep",
    "TenToChuc",
    "QueQuan",
    "NoiCu",
    "NoiCap",
    "NgayCap",
    "ThuongTru",
    "TamTru",
];

/// Whether a field (its leaf name) is personal: listed, or named with a personal part.
pub fn is_personal(leaf: &str) -> bool {
    PERSONAL.contains(&leaf) || PERSONAL_PARTS.iter().any(|p| leaf.contains(p))
}

/// What was dropped from a request: field names (nested ones as `DanhSachHoSoBoSung[].NoiDungBoSung`), each once.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub personal: Vec<String>,
    pub other: Vec<String>,
}

impl Dropped {
    fn note(&mut self, name: String) {
        let leaf = name.rsplit('.').next().unwrap_or(&name);
        let list = if is_personal(leaf) {
            &mut self.personal
        } else {
            &mut self.other
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }

    pub fn merge(&mut self, other: Dropped) {
        for n in other.personal.into_iter().chain(other.other) {
            self.note(n);
        }
    }
}

/// One request of the sync, read.
#[derive(Clone, Debug)]
pub struct Request {
    pub service: Service,
    /// `madonvi`, mapped.
    pub sender: Option<AgencyCode>,
    /// What `isUpdating` said (the adapter compares with the log whatever it says).
    pub is_updating: Option<bool>,
    pub items: Vec<Item>,
    /// What was dropped from the request's envelope (not its items).
    pub dropped: Dropped,
}

#[derive(Clone, Debug)]
pub enum Item {
    Upsert(Upsert),
    Step(Step),
    Lookup(DossierCode),
}

impl Item {
    pub fn dossier(&self) -> &DossierCode {
        match self {
            Item::Upsert(u) => &u.dossier,
            Item::Step(s) => &s.dossier,
            Item::Lookup(d) => d,
        }
    }
}

/// A supplement round (an element of `DanhSachHoSoBoSung`).
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    /// Its index in the payload's `DanhSachHoSoBoSung` (rounds are taken in time order).
    pub index: usize,
    /// `NgayBoSung`: when the documents were asked for.
    pub requested_at: Instant,
    /// `NgayTiepNhanBoSung`: when they arrived, if they have.
    pub received_at: Option<Instant>,
    /// `NgayHenTraTruoc`, `NgayHenTraMoi`: the portal's due date before and after the round.
    pub due_before: Option<Instant>,
    pub due_after: Option<Instant>,
}

/// A `DongBoHoSoMC` dossier, read.
#[derive(Clone, Debug)]
pub struct Upsert {
    pub dossier: DossierCode,
    /// The agency that received it: `madonvi`, or the agency part of `MaHoSo` under a mapping that says so.
    pub agency: Option<AgencyCode>,
    pub procedure: Option<ProcedureCode>,
    pub status_code: String,
    pub status: Meaning,
    pub received_at: Option<Instant>,
    pub due_at: Option<Instant>,
    pub ended_at: Option<Instant>,
    pub returned_at: Option<Instant>,
    /// `KenhThucHien`; absent on an update, the log's stands (a new dossier without one came in at the counter).
    pub channel: Option<Channel>,
    pub level: Option<OnlineLevel>,
    /// `HinhThuc` said the result goes by post (absent: not said).
    pub result_by_post: Option<bool>,
    pub return_channel: Option<Channel>,
    pub applicant: Option<Applicant>,
    pub unit: Option<Unit>,
    pub rounds: Vec<Round>,
    pub dropped: Dropped,
    /// What was read but not taken, for the answer (an applicant kind the mapping does not know).
    pub notes: Vec<String>,
    /// The channel the site's mapping gives a dossier of this procedure sent without `KenhThucHien`.
    pub default_channel: Option<Channel>,
    /// What the site's system does to `NgayHenTra` when a dossier resumes after a round.
    pub due_on_resume: crate::mapping::DueOnResume,
    /// When the request arrived (set by whoever received it; `None` in an offline import): an end the payload
    /// does not date is dated by it.
    pub arrived_at: Option<Instant>,
}

/// A `CapNhatTienDoHoSoMC` step, read.
#[derive(Clone, Debug)]
pub struct Step {
    pub dossier: DossierCode,
    pub at: Instant,
    pub status_code: String,
    pub status: Meaning,
    pub unit: Option<Unit>,
    pub dropped: Dropped,
}

/// Reads a body: one request or an array of them. Every problem of every request is reported, each with the
/// request's index; nothing is read half.
pub fn read_body(body: &Value, mapping: &Mapping) -> Result<Vec<Request>, Vec<(usize, Problem)>> {
    let requests: Vec<&Value> = match body {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Array(_) => {
            return Err(vec![(
                0,
                Problem::invalid("", "an empty array: send one request or an array of them"),
            )])
        }
        one => vec![one],
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        match read_request(r, mapping) {
            Ok(r) => out.push(r),
            Err(ps) => problems.extend(ps.into_iter().map(|p| (i, p))),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A value the sync sends as a string or a number, as text; empty and null are absent.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `yyyyMMddHHmmss` in Vietnam time.
pub fn parse_time(s: &str) -> Result<Instant, String> {
    let shape = s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit());
    let naive = shape
        .then(|| chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok())
        .flatten()
        .ok_or_else(|| format!("{s:?} is not a time as yyyyMMddHHmmss (Vietnam time)"))?;
    let t = naive
        .and_local_timezone(domain::calendar::vietnam())
        .single()
        .ok_or_else(|| format!("{s:?} is not a time in Vietnam"))?;
    domain::rules::checked_time(t).map_err(|why| format!("{s:?} {why}"))
}

/// `isUpdating` as clients write it: `True`/`False` in any case, or `1`/`0`.
pub fn parse_flag(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{s:?} is neither True nor False")),
    }
}

/// An instant as the sync writes it.
pub fn format_time(t: &Instant) -> String {
    t.with_timezone(&domain::calendar::vietnam())
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Reads the fields of one object the adapter knows, noting the rest as dropped.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
    problems: Vec<Problem>,
    read: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(object: &'a Map<String, Value>, path: String) -> Fields<'a> {
        Fields {
            object,
            path,
            problems: Vec::new(),
            read: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        self.read.push(name);
        self.object.get(name)
    }

    fn text(&mut self, name: &'static str) -> Option<String> {
        let v = self.raw(name);
        text(v)
    }

    fn required(&mut self, name: &'static str) -> Option<String> {
        let t = self.text(name);
        if t.is_none() {
            let f = self.field(name);
            self.problems.push(Problem::invalid(f, "missing"));
        }
        t
    }

    /// A required field read through `f`: its text and its value, a problem when missing or unreadable.
    fn required_map<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<(String, T)> {
        let t = self.required(name)?;
        self.parsed(name, t, f)
    }

    /// A field read through `f`, its error reported against the field.
    fn map<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let t = self.text(name)?;
        self.parsed(name, t, f).map(|(_, v)| v)
    }

    /// `text`, the value of field `name`, read through `f`; an error becomes the field's problem.
    fn parsed<T>(
        &mut self,
        name: &'static str,
        text: String,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<(String, T)> {
        match f(&text) {
            Ok(v) => Some((text, v)),
            Err(e) => {
                let field = self.field(name);
                self.problems.push(Problem::invalid(field, e));
                None
            }
        }
    }

    fn time(&mut self, name: &'static str) -> Option<Instant> {
        self.map(name, parse_time)
    }

    /// Every field not read, as dropped (named by its path without indexes).
    fn dropped(&self, prefix: &str) -> Dropped {
        let mut d = Dropped::default();
        for k in self.object.keys() {
            if !self.read.contains(&k.as_str()) {
                d.note(format!("{prefix}{k}"));
            }
        }
        d
    }
}

fn read_request(r: &Value, mapping: &Mapping) -> Result<Request, Vec<Problem>> {
    let Value::Object(o) = r else {
        return Err(vec![Problem::invalid(
            "",
            "a request is an object {session, madonvi, service, isUpdating, data}",
        )]);
    };
    let mut f = Fields::new(o, String::new());
    f.read.push("session");
    let service = match f
        .required("service")
        .as_deref()
        .map(|s| service_named(s).map_or(s, |n| n.0))
    {
        Some("DongBoHoSoMC") => Some(Service::Upsert),
        Some("CapNhatTienDoHoSoMC") => Some(Service::Step),
        Some("TraCuuHoSo") => Some(Service::Lookup),
        Some(other) => {
            f.problems.push(Problem::invalid(
                "service",
                format!("{other:?} is not a service casetrail answers (DongBoHoSoMC, CapNhatTienDoHoSoMC, TraCuuHoSo)"),
            ));
            None
        }
        None => None,
    };
    let sender = f.map("madonvi", |s| mapping.agency(s));
    let is_updating = f.map("isUpdating", parse_flag);
    let mut items = Vec::new();
    let mut dropped_items = Dropped::default();
    match service {
        Some(Service::Lookup) => {
            // The lookup names its dossier at the top (`mahoso`), or in `data` like the others.
            let top = f.text("mahoso").or_else(|| f.text("MaHoSo"));
            let mut codes = Vec::new();
            if let Some(c) = top {
                codes.push(("mahoso".to_owned(), c));
            }
            for (i, d) in data_items(&mut f).into_iter().enumerate() {
                match d {
                    Value::Object(d) => match text(d.get("MaHoSo")) {
                        Some(c) => codes.push((format!("data[{i}].MaHoSo"), c)),
                        None => f
                            .problems
                            .push(Problem::invalid(format!("data[{i}].MaHoSo"), "missing")),
                    },
                    _ => f
                        .problems
                        .push(Problem::invalid(format!("data[{i}]"), "not an object")),
                }
            }
            if codes.is_empty() && f.problems.is_empty() {
                f.problems.push(Problem::invalid(
                    "mahoso",
                    "missing: name the dossier to look up",
                ));
            }
            for (field, c) in codes {
                match DossierCode::parse(&c) {
                    Ok(d) => items.push(Item::Lookup(d)),
                    Err(e) => f.problems.push(Problem::invalid(field, e)),
                }
            }
        }
        Some(service) => {
            let data = data_items(&mut f);
            if data.is_empty() && f.problems.is_empty() {
                f.problems.push(Problem::invalid(
                    "data",
                    "missing or empty: send the dossiers in data",
                ));
            }
            for (i, d) in data.into_iter().enumerate() {
                let path = format!("data[{i}]");
                let Value::Object(d) = d else {
                    f.problems.push(Problem::invalid(path, "not an object"));
                    continue;
                };
                let read = match service {
                    Service::Upsert => {
                        read_upsert(d, path, mapping, sender.as_ref()).map(Item::Upsert)
                    }
                    _ => read_step(d, path, mapping).map(Item::Step),
                };
                match read {
                    Ok(item) => {
                        let d = match &item {
                            Item::Upsert(u) => u.dropped.clone(),
                            Item::Step(s) => s.dropped.clone(),
                            Item::Lookup(_) => Dropped::default(),
                        };
                        dropped_items.merge(d);
                        items.push(item);
                    }
                    Err(ps) => f.problems.extend(ps),
                }
            }
        }
        None => {}
    }
    if !f.problems.is_empty() {
        return Err(f.problems);
    }
    let mut dropped = f.dropped("");
    dropped.merge(dropped_items);
    Ok(Request {
        service: service.expect("no problem, so a service"),
        sender,
        is_updating,
        items,
        dropped,
    })
}

/// `data`: an array of objects, one object, or (as some clients send it) a JSON string of either.
fn data_items<'a>(f: &mut Fields<'a>) -> Vec<&'a Value> {
    match f.raw("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            f.problems
                .push(Problem::invalid("data", "an object or an array of objects"));
            Vec::new()
        }
    }
}

/// The agency part of a dossier code (`000.00.12.H27-190312-0001` → `000.00.12.H27`).
fn code_prefix(dossier: &str) -> Option<&str> {
    dossier
        .split('-')
        .next()
        .filter(|p| !p.is_empty() && *p != dossier)
}

fn read_upsert(
    d: &Map<String, Value>,
    path: String,
    mapping: &Mapping,
    sender: Option<&AgencyCode>,
) -> Result<Upsert, Vec<Problem>> {
    let mut f = Fields::new(d, path.clone());
    let dossier = f.required_map("MaHoSo", DossierCode::parse).map(|(_, d)| d);
    let agency = match mapping.receiving {
        crate::mapping::Receiving::Sender => sender.cloned(),
        crate::mapping::Receiving::DossierCode => dossier.as_ref().and_then(|d| {
            let prefix = code_prefix(d.as_str());
            match prefix.map(|p| mapping.agency(p)) {
                Some(Ok(a)) => Some(a),
                Some(Err(e)) => {
                    let field = f.field("MaHoSo");
                    f.problems.push(Problem::invalid(field, e));
                    None
                }
                None => {
                    let field = f.field("MaHoSo");
                    f.problems.push(Problem::invalid(
                        field,
                        "has no agency part before its first '-'",
                    ));
                    None
                }
            }
        }),
    };
    let procedure = f.map("MaTTHC", |s| mapping.procedure(s));
    let status = f.required_map("TrangThaiHoSo", |c| mapping.status(c));
    let received_at = f.time("NgayTiepNhan");
    let due_at = f.time("NgayHenTra");
    let ended_at = f.time("NgayKetThucXuLy");
    let returned_at = f.time("NgayTra");
    let channel = f.map("KenhThucHien", |s| mapping.channel(s));
    let level = f.map("MucDo", |s| mapping.online_level(s));
    let by_post = f.map("HinhThuc", |s| mapping.result_channel(s));
    let return_channel = f
        .map("HinhThucTra", |s| mapping.result_channel(s))
        .or(by_post);
    // Who applied counts in no indicator: a kind the mapping does not know is noted and dropped, never refused.
    let mut notes = Vec::new();
    let applicant = match f.text("LoaiDoiTuong") {
        None => None,
        Some(code) => {
            match mapping.applicant(&code) {
                Ok(a) => Some(a),
                Err(e) => {
                    notes.push(format!("LoaiDoiTuong: {e}; who applied is not recorded (it counts in no indicator)"));
                    None
                }
            }
        }
    };
    let unit = f.map("DonViXuLy", |s| mapping.unit(s));
    let mut rounds = Vec::new();
    let mut dropped = Dropped::default();
    match f.raw("DanhSachHoSoBoSung") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                let rpath = format!("{path}.DanhSachHoSoBoSung[{i}]");
                let Value::Object(r) = r else {
                    f.problems.push(Problem::invalid(rpath, "not an object"));
                    continue;
                };
                let mut rf = Fields::new(r, rpath.clone());
                let requested_at = rf.time("NgayBoSung");
                if requested_at.is_none() && rf.problems.is_empty() {
                    rf.problems.push(Problem::invalid(
                        format!("{rpath}.NgayBoSung"),
                        "missing: when were the documents asked for?",
                    ));
                }
                let received = rf.time("NgayTiepNhanBoSung");
                let due_before = rf.time("NgayHenTraTruoc");
                let due_after = rf.time("NgayHenTraMoi");
                dropped.merge(rf.dropped("DanhSachHoSoBoSung[]."));
                f.problems.extend(rf.problems);
                if let Some(requested_at) = requested_at {
                    rounds.push(Round {
                        index: i,
                        requested_at,
                        received_at: received,
                        due_before,
                        due_after,
                    });
                }
            }
        }
        Some(_) => f.problems.push(Problem::invalid(
            format!("{path}.DanhSachHoSoBoSung"),
            "an array of supplement rounds",
        )),
    }
    rounds.sort_by_key(|r| r.requested_at);
    let default_channel = procedure.as_ref().and_then(|p| mapping.default_channel(p));
    if !f.problems.is_empty() {
        return Err(f.problems);
    }
    dropped.merge(f.dropped(""));
    Ok(Upsert {
        dossier: dossier.expect("no problem, so a dossier"),
        agency,
        procedure,
        status_code: status.as_ref().expect("no problem, so a status").0.clone(),
        status: status.expect("no problem, so a status").1,
        received_at,
        due_at,
        ended_at,
        returned_at,
        channel,
        level,
        result_by_post: by_post.map(|c| c == Channel::Postal),
        return_channel,
        applicant,
        unit,
        rounds,
        dropped,
        notes,
        default_channel,
        due_on_resume: mapping.due_on_resume,
        arrived_at: None,
    })
}

fn read_step(
    d: &Map<String, Value>,
    path: String,
    mapping: &Mapping,
) -> Result<Step, Vec<Problem>> {
    let mut f = Fields::new(d, path);
    let dossier = f.required_map("MaHoSo", DossierCode::parse).map(|(_, d)| d);
    let at = f.required_map("ThoiDiemXuLy", parse_time).map(|(_, t)| t);
    let status = f.required_map("TrangThai", |c| mapping.status(c));
    let unit = f.map("PhongBanXuLy", |s| mapping.unit(s));
    if !f.problems.is_empty() {
        return Err(f.problems);
    }
    Ok(Step {
        dossier: dossier.expect("no problem, so a dossier"),
        at: at.expect("no problem, so a time"),
        status_code: status.as_ref().expect("no problem, so a status").0.clone(),
        status: status.expect("no problem, so a status").1,
        unit,
        dropped: f.dropped(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_are_vietnam_wall_clock_seconds() {
        let t = parse_time("20190331233000").unwrap();
        assert_eq!(t.to_rfc3339(), "2019-03-31T23:30:00+07:00");
        assert_eq!(format_time(&t), "20190331233000");
        for bad in [
            "2019033123300",
            "20190230120000",
            "2019-03-31T23:30",
            "20191331000000",
            "2019033124000a",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn personal_fields_are_dropped_and_named() {
        let m = Mapping::portal();
        let body = json!({"session": "s", "madonvi": "000.00.12.H27", "service": "DongBoHoSoMC", "isUpdating": "False",
            "data": [{"MaHoSo": "D-1", "MaTTHC": "1.001234", "TrangThaiHoSo": "2", "NgayTiepNhan": "20190312083000",
                      "ChuHoSo": "Nguyễn Văn A", "SoDienThoai": "0912345678", "TenTTHC": "Cấp phép",
                      "DanhSachHoSoBoSung": [{"NgayBoSung": "20190313080000", "NoiDungBoSung": "thiếu giấy"}]}]});
        let r = read_body(&body, &m).unwrap().remove(0);
        assert_eq!(r.service, Service::Upsert);
        assert_eq!(r.is_updating, Some(false));
        assert_eq!(
            r.dropped.personal,
            [
                "DanhSachHoSoBoSung[].NoiDungBoSung",
                "ChuHoSo",
                "SoDienThoai"
            ]
        );
        assert_eq!(r.dropped.other, ["TenTTHC"]);
    }

    #[test]
    fn identity_contact_and_address_fields_are_personal_by_their_names() {
        for name in [
            "SoGiayToChuHoSo",
            "DinhDanhCHS",
            "LoaiDinhDanh",
            "EmailChuHoSo",
            "DiaChiNguoiNop",
            "SoDienThoaiNguoiNhan",
            "NgayCapCCCD",
            "HoChieuSo",
        ] {
            assert!(is_personal(name), "{name}");
        }
        for name in ["TenTTHC", "MaLinhVuc", "TrangThaiThanhToan", "LePhi"] {
            assert!(!is_personal(name), "{name}");
        }
        let m = Mapping::portal();
        let body = json!({"service": "DongBoHoSoMC", "madonvi": "000.00.12.H27",
            "data": [{"MaHoSo": "D-1", "MaTTHC": "1.001234", "TrangThaiHoSo": "2", "NgayTiepNhan": "20190312083000",
                      "SoGiayToChuHoSo": "012345678901", "DinhDanhCHS": "012345678901", "TenTTHC": "Cấp phép"}]});
        let r = read_body(&body, &m).unwrap().remove(0);
        assert_eq!(r.dropped.personal, ["SoGiayToChuHoSo", "DinhDanhCHS"]);
        assert_eq!(r.dropped.other, ["TenTTHC"]);
    }

    #[test]
    fn the_gateway_form_is_the_portal_form_with_the_query_filled_in() {
        let dossier = json!({"MaHoSo": "D-1", "TrangThaiHoSo": "2"});
        let gateway = Gateway {
            service: Some("ThemMoi".into()),
            madonvi: Some("000.00.12.H27".into()),
            is_updating: None,
        };
        assert_eq!(
            in_portal_form(json!([dossier.clone()]), &gateway),
            json!({"service": "DongBoHoSoMC", "madonvi": "000.00.12.H27", "isUpdating": "False", "data": [dossier.clone()]})
        );
        // A request body sent to a gateway URL keeps what it says.
        let request = json!({"service": "TraCuuHoSo", "mahoso": "D-1"});
        assert_eq!(
            in_portal_form(request.clone(), &gateway)["service"],
            "TraCuuHoSo"
        );
        let no_service = json!([{"madonvi": "X", "data": [dossier.clone()]}]);
        let filled = in_portal_form(no_service, &gateway);
        assert_eq!(
            (filled[0]["service"].as_str(), filled[0]["madonvi"].as_str()),
            (Some("DongBoHoSoMC"), Some("X"))
        );
        // Nothing from the gateway: the body as it came.
        assert_eq!(
            in_portal_form(json!([dossier.clone()]), &Gateway::default()),
            json!([dossier])
        );
        for name in SERVICE_NAMES {
            assert!(service_named(name).is_some());
        }
        assert!(service_named("LayThuTuc").is_none());
    }

    #[test]
    fn every_problem_is_named_with_its_request() {
        let m = Mapping::portal();
        let body = json!([
            {"service": "DongBoHoSoMC", "madonvi": "000.00.12.H27", "data": [{"MaHoSo": "D-1", "TrangThaiHoSo": "42", "NgayTiepNhan": "2019-03-12", "KenhThucHien": "9"}]},
            {"service": "LayThuTuc"},
            {"service": "CapNhatTienDoHoSoMC", "data": [{"MaHoSo": "D-1", "TrangThai": "4"}]}
        ]);
        let problems = read_body(&body, &m).unwrap_err();
        let named: Vec<(usize, &str)> = problems
            .iter()
            .map(|(i, p)| (*i, p.field.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                (0, "data[0].TrangThaiHoSo"),
                (0, "data[0].NgayTiepNhan"),
                (0, "data[0].KenhThucHien"),
                (1, "service"),
                (2, "data[0].ThoiDiemXuLy"),
            ]
        );
        assert!(problems.iter().all(|(_, p)| p.kind == ProblemKind::Invalid));
    }

    #[test]
    fn a_lookup_names_its_dossier_at_the_top_or_in_data() {
        let m = Mapping::portal();
        for body in [
            json!({"service": "TraCuuHoSo", "mahoso": "D-1"}),
            json!({"service": "TraCuuHoSo", "data": [{"MaHoSo": "D-1"}]}),
        ] {
            let r = read_body(&body, &m).unwrap().remove(0);
            assert!(matches!(&r.items[..], [Item::Lookup(d)] if d.as_str() == "D-1"));
        }
        assert!(read_body(&json!({"service": "TraCuuHoSo"}), &m).is_err());
    }
}
