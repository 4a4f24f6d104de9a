//! Identifiers that travel in events and URLs: dossier, agency and procedure codes, and bounded texts.
//!
//! Each is a newtype whose constructor is the only way in, so a value of the type is valid by construction.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The OpenAPI schema of a string type: its pattern (if any), length bounds and description.
#[cfg(feature = "openapi")]
pub(crate) fn string_schema(
    pattern: Option<&str>,
    min: usize,
    max: usize,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(pattern)
        .min_length(Some(min))
        .max_length(Some(max))
        .description(Some(description))
        .into()
}

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $check:path, $pattern:expr, $min:expr, $max:expr) => {
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                string_schema($pattern, $min, $max, stringify!($name))
            }
        }
        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}

        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it; the error is a lowercase clause fit for an API message.
            pub fn parse(s: &str) -> Result<Self, String> {
                $check(s)?;
                Ok(Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn check_charset(
    s: &str,
    min: usize,
    max: usize,
    ok: fn(char) -> bool,
    allowed: &str,
) -> Result<(), String> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(format!("must be {min} to {max} characters long, got {n}"));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!("contains {c:?}; allowed characters are {allowed}"));
    }
    // Codes are URL path segments (`/v1/dossiers/{code}`); `.` and `..` can never reach a route as one.
    if s == "." || s == ".." {
        return Err(format!(
            "{s:?} cannot be a code: a URL path cannot carry it"
        ));
    }
    Ok(())
}

fn check_dossier(s: &str) -> Result<(), String> {
    check_charset(
        s,
        1,
        64,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        "A-Z a-z 0-9 . _ -",
    )
}

fn check_agency(s: &str) -> Result<(), String> {
    check_charset(
        s,
        1,
        32,
        |c| c.is_ascii_alphanumeric() || c == '.',
        "A-Z a-z 0-9 .",
    )
}

/// Procedure codes are opaque (national codes look like `1.001234`, local systems differ), but they appear in
/// URL paths and stream keys, so slashes, whitespace and control characters are refused.
fn check_procedure(s: &str) -> Result<(), String> {
    check_charset(
        s,
        1,
        32,
        |c| !(c == '/' || c.is_whitespace() || c.is_control()),
        "any but '/', whitespace and control characters",
    )
}

code_type!(
    /// A dossier code (mã hồ sơ): 1–64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`. One dossier is one stream.
    DossierCode,
    check_dossier,
    Some("^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63}|[.][A-Za-z0-9_-][A-Za-z0-9._-]{0,62}|[.][.][A-Za-z0-9._-]{1,62})$"),
    1,
    64
);
/// An agency code as a regular expression (unanchored): not `.` or `..`. (Patterns are used only by the `openapi`
/// feature.)
#[allow(unused_macros)]
macro_rules! agency_code {
    () => {
        "([A-Za-z0-9][A-Za-z0-9.]{0,31}|[.][A-Za-z0-9][A-Za-z0-9.]{0,30}|[.][.][A-Za-z0-9.]{1,30})"
    };
}
#[allow(unused_imports)]
pub(crate) use agency_code;

code_type!(
    /// An agency code in the QCVN 102 style (`000.00.12.H27`): 1–32 of `A-Z a-z 0-9 .`; the layout is not checked.
    AgencyCode,
    check_agency,
    Some(concat!("^", agency_code!(), "$")),
    1,
    32
);
/// The characters a procedure code may not hold, as a regular expression class body.
#[allow(unused_macros)]
macro_rules! procedure_char {
    () => {
        "/\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
    };
}

code_type!(
    /// A procedure code (mã TTHC), opaque, 1–32 characters.
    ProcedureCode,
    check_procedure,
    // Not '/', whitespace or a control character (Rust's `char::is_whitespace` and `is_control`, spelled out: the
    // C0 and C1 controls, space, NEL, NBSP and the other Unicode spaces); not `.` or `..`.
    Some(concat!(
        "^([^.", procedure_char!(), "][^", procedure_char!(), "]{0,31}",
        "|[.][^.", procedure_char!(), "][^", procedure_char!(), "]{0,30}",
        "|[.][.][^", procedure_char!(), "]{1,30})$"
    )),
    1,
    32
);

/// The longest free text (`note`, `reason`) an event may carry, in characters.
pub const TEXT_CHARS_MAX: usize = 2_000;

fn check_text(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n > TEXT_CHARS_MAX {
        return Err(format!(
            "must be at most {TEXT_CHARS_MAX} characters, got {n}"
        ));
    }
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(())
}

code_type!(
    /// A free text of 1–2,000 characters that is not only whitespace.
    Text,
    check_text,
    // Not only whitespace: somewhere a character that is not (Rust's `char::is_whitespace`, spelled out: `\S`
    // differs on U+0085 and U+FEFF).
    Some("[^\\x09-\\x0d\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"),
    1,
    TEXT_CHARS_MAX
);
