//! The National Public Service Portal (DVCQG) sync, spoken by casetrail.
//!
//! Every provincial one-stop system already pushes its dossiers to the portal: `DongBoHoSoMC` (the dossier as it
//! stands), `CapNhatTienDoHoSoMC` (a processing step), after a `TraCuuHoSo` lookup. This crate reads those requests
//! under a site's [`Mapping`] ([`wire`]), dropping every field it does not need (personal data first), and
//! compares each with what the log knows of its dossier ([`translate`]): the answer is the events the log is
//! missing, in order, with content-derived ids. No IO: the application layer reads the log and writes the plan.

pub mod emulate;
pub mod mapping;
pub mod translate;
pub mod wire;

pub use mapping::{Mapping, Meaning, Unit};
pub use translate::{content_id, step, upsert, Catalogue, Known, Life, Plan};
pub use wire::{
    in_portal_form, read_body, service_named, Dropped, Gateway, Item, Problem, ProblemKind,
    Request, Service,
};

use serde_json::{json, Value};

/// A `TraCuuHoSo` answer for a dossier the log has: its state, procedure and unit in the site's codes, and its
/// dates as the sync writes them.
pub fn lookup_answer(dossier: &domain::DossierCode, life: &Life, mapping: &Mapping) -> Value {
    // Absent dates are empty strings, as the sync writes them.
    let time = |t: Option<domain::Instant>| t.map(|t| wire::format_time(&t)).unwrap_or_default();
    let ended = life
        .resolved
        .map(|r| r.0)
        .or(life.returned.map(|r| r.0))
        .or(life.withdrawn);
    let by_post = if life.result_by_post {
        domain::event::Channel::Postal
    } else {
        domain::event::Channel::Counter
    };
    json!({
        "MaHoSo": dossier,
        "MaTTHC": mapping.site_procedure(&life.procedure),
        "TrangThaiHoSo": mapping.status_code(life.meaning()),
        "KenhThucHien": mapping.channel_code(life.channel),
        "HinhThuc": mapping.result_channel_code(by_post),
        "NgayTiepNhan": time(Some(life.received_at)),
        "NgayHenTra": time(life.due),
        "NgayKetThucXuLy": time(ended),
        "NgayTra": time(life.returned.map(|r| r.0)),
        "DonViXuLy": mapping.site_agency(&life.holder),
    })
}
