//! Secret values: never shown in `Debug`, `Display` or error messages, and readable from files.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A secret value: shows as `[redacted]` in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a secret from a file, without a trailing newline. The error names the file, never
/// its content.
pub fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(Secret(value))
}

pub fn secret(value: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<Option<Secret>> {
    match (value, file) {
        (_, Some(path)) => read_secret_file(path).map(Some),
        (Some(v), None) => Ok(Some(Secret(v.clone()))),
        (None, None) => Ok(None),
    }
}
