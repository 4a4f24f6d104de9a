//! Identifiers that travel in events and URLs: dossier, agency and procedure codes, and bounded texts.
//!
//! Each is a newtype whose constructor is the only way in, so a value of the type is valid by construction.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! code_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
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
    /// A dossier code (mã hồ sơ): 1–64 of `A-Z a-z 0-9 . _ -`. One dossier is one stream.
    DossierCode,
    check_dossier
);
code_type!(
    /// An agency code in the QCVN 102 style (`000.00.12.H27`): 1–32 of `A-Z a-z 0-9 .`; the layout is not checked.
    AgencyCode,
    check_agency
);
code_type!(
    /// A procedure code (mã TTHC), opaque, 1–32 characters.
    ProcedureCode,
    check_procedure
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
    check_text
);
