//! The document's enumerations of names, built from the core's own lists so that the OpenAPI
//! document and the server can never disagree about them.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A string schema that admits exactly `values`.
fn names(description: &str, values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

macro_rules! name_enum {
    ($(#[doc = $doc:literal])* $name:ident => $values:expr) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                names(concat!($($doc),*).trim(), $values)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

name_enum! {
    /// A transaction kind.
    KindName => app::tx::Kind::ALL.iter().map(|k| k.as_str())
}

name_enum! {
    /// A task's phase.
    PhaseName => app::model::Phase::ALL.iter().map(|p| p.as_str())
}

name_enum! {
    /// A console user's role.
    RoleName => app::auth::Role::ALL.iter().map(|r| r.as_str())
}

name_enum! {
    /// An action the audit log records (empty: every action).
    AuditActionName => std::iter::once("").chain(app::model::AuditAction::ALL.iter().map(|a| a.as_str()))
}

/// RFC 3339 time (any offset, any case of `T` and `Z`, a leap second allowed) as milliseconds
/// since the epoch; times before 1970 are 0.
pub fn parse_rfc3339(field: &str, text: &str) -> Result<i64, crate::error::BadRequest> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            crate::error::BadRequest::new(
                crate::error::ErrorCode::InvalidParameter,
                format!(
                    "{field}: {:?} is not an RFC 3339 time ({e}), e.g. 2026-01-31T12:00:00Z",
                    super::truncate(text)
                ),
            )
        })?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    Ok(i64::try_from(ms.max(0)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn rfc3339_offsets_case_and_range() {
        assert_eq!(parse_rfc3339("t", "1970-01-01T00:00:01Z").ok(), Some(1000));
        assert_eq!(
            parse_rfc3339("t", "1970-01-01t01:00:01.5+01:00").ok(),
            Some(1500)
        );
        assert_eq!(parse_rfc3339("t", "1970-01-01T00:00:00z").ok(), Some(0));
        assert_eq!(parse_rfc3339("t", "0001-01-01T00:00:00Z").ok(), Some(0));
        assert!(parse_rfc3339("t", "9999-12-31T23:59:60Z").is_ok());
        for bad in [
            "",
            "2026-02-30T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
        ] {
            let e = parse_rfc3339("since", bad).expect_err(bad);
            assert!(e.detail.starts_with("since: "), "{}", e.detail);
        }
    }
}
