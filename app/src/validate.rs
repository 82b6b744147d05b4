//! Stateless transaction validation: one precise error per rule.
//!
//! [`validate`] checks what can be decided from the transaction alone: the `hash` field equals
//! the recomputed hash, the signature, and the payload rules and size limits below. Rules that
//! need the database (the parent's kind, the ACL whitelist) are checked by [`crate::intake`].
//!
//! | rule | error code |
//! |---|---|
//! | `hash` field equals the recomputed hash | `hash_mismatch` |
//! | signature by `author` over the (word-reversed) hash | `bad_signature` |
//! | a Run has 1..=`max_steps` steps naming distinct programs | `empty_workflow`, `too_many_items`, `duplicate_program` |
//! | an `Output` input names a program of an earlier step | `output_without_source` |
//! | file names are VM paths under `/workspace/` without `.`/`..`/empty parts | `bad_file_name` |
//! | image file names are plain file names | `bad_file_name` |
//! | URLs are absolute `http`/`https` URLs with a host | `bad_url` |
//! | checksums are 64 hexadecimal characters | `bad_checksum` |
//! | program hashes match their metadata | `program_hash_mismatch` |
//! | resource requests are within bounds (cpus ≥ 1, mem ≥ 1 MiB) | `bad_resource_request` |
//! | every string, list and byte field within [`Limits`] | `field_too_long`, `too_many_items` |
//! | big integers fit in `max_value_bits` | `value_too_large` |

use std::collections::HashSet;

use crate::crypto::SignatureError;
use crate::tx::{Hash, Kind, Payload, ProgramData, ProgramMetadata, Transaction, TxFile};

/// The directory inside a VM where programs read inputs and write outputs.
pub const WORKSPACE: &str = "/workspace";

/// Size limits. Defaults are generous for real provers and small enough that one transaction
/// cannot exhaust the node; `max_proof_bytes` is an operator directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Program names, the Deploy name, image file names.
    pub max_name_len: usize,
    pub max_url_len: usize,
    /// VM paths (input and output file names).
    pub max_path_len: usize,
    pub max_arg_len: usize,
    pub max_args: usize,
    pub max_steps: usize,
    pub max_inputs_per_step: usize,
    pub max_files: usize,
    /// Proof, verification and proof-key bytes.
    pub max_proof_bytes: usize,
    pub max_value_bits: usize,
    pub max_cpus: u64,
    pub max_mem_mib: u64,
    pub max_gpus: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_len: 256,
            max_url_len: 2048,
            max_path_len: 1024,
            max_arg_len: 4096,
            max_args: 256,
            max_steps: 32,
            max_inputs_per_step: 256,
            max_files: 256,
            max_proof_bytes: 16 * 1024 * 1024,
            max_value_bits: 256,
            max_cpus: 4096,
            max_mem_mib: 64 * 1024 * 1024,
            max_gpus: 64,
        }
    }
}

/// Why a transaction was refused. `code()` is the stable slug shared by every API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(
        "the hash field {claimed} does not match the transaction's content, whose hash is {computed}; recompute the hash after the last change to the transaction and sign that"
    )]
    HashMismatch { claimed: Hash, computed: Hash },
    #[error("bad signature: {0}; sign the word-reversed transaction hash with the author's key")]
    Signature(SignatureError),
    #[error("a Run needs at least one workflow step")]
    EmptyWorkflow,
    #[error(
        "{field}: program {program} already runs in step {first}; each step of a workflow must name a different program"
    )]
    DuplicateProgram {
        field: String,
        program: Hash,
        first: usize,
    },
    #[error(
        "{field}: names the output of program {program}, which is not the program of an earlier step"
    )]
    OutputWithoutSource { field: String, program: Hash },
    #[error("{field}: {reason} (got {value:?})")]
    BadFileName {
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error("{field}: {reason} (got {value:?})")]
    BadUrl {
        field: String,
        value: String,
        reason: String,
    },
    #[error("{field}: a checksum is the 64-character hex BLAKE3 of the file (got {value:?})")]
    BadChecksum { field: String, value: String },
    #[error(
        "{field}: the program hash {claimed} does not match its metadata, whose hash is {computed} (SHA3-256 of name, image file name, URL and checksum)"
    )]
    ProgramHashMismatch {
        field: String,
        claimed: Hash,
        computed: Hash,
    },
    #[error("{field}: {reason}")]
    BadResourceRequest { field: String, reason: String },
    #[error("{field}: {len} bytes is longer than the limit of {max}")]
    FieldTooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("{field}: {len} items is more than the limit of {max}")]
    TooMany {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("{field}: the value needs more than {max_bits} bits")]
    ValueTooLarge { field: String, max_bits: usize },
    #[error("the parent {parent} is a {found} transaction, but a {kind} must name a {expected}")]
    ParentWrongKind {
        kind: Kind,
        parent: Hash,
        found: Kind,
        expected: &'static str,
    },
    #[error(
        "the author {0} is not on this node's ACL whitelist; ask the network's operator to whitelist the key"
    )]
    AuthorNotWhitelisted(String),
    #[error(
        "only the author of the Run {run} (or an operator of a node of the network, through its REST API or console) may cancel it; {author} is neither"
    )]
    CancelNotAuthorized { run: Hash, author: String },
}

impl ValidationError {
    /// A stable snake_case code for clients (REST problem `code`, JSON-RPC `error.data.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::HashMismatch { .. } => "hash_mismatch",
            Self::Signature(_) => "bad_signature",
            Self::EmptyWorkflow => "empty_workflow",
            Self::DuplicateProgram { .. } => "duplicate_program",
            Self::OutputWithoutSource { .. } => "output_without_source",
            Self::BadFileName { .. } => "bad_file_name",
            Self::BadUrl { .. } => "bad_url",
            Self::BadChecksum { .. } => "bad_checksum",
            Self::ProgramHashMismatch { .. } => "program_hash_mismatch",
            Self::BadResourceRequest { .. } => "bad_resource_request",
            Self::FieldTooLong { .. } => "field_too_long",
            Self::TooMany { .. } => "too_many_items",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::ParentWrongKind { .. } => "parent_wrong_kind",
            Self::AuthorNotWhitelisted(_) => "author_not_whitelisted",
            Self::CancelNotAuthorized { .. } => "cancel_not_authorized",
        }
    }
}

/// Checks everything that can be decided from the transaction alone.
pub fn validate(tx: &Transaction, limits: &Limits) -> Result<(), ValidationError> {
    // Cheap structural checks first, so junk is refused before any hashing or curve arithmetic.
    check_payload(&tx.payload, limits)?;
    let computed = tx.compute_hash();
    if computed != tx.hash {
        return Err(ValidationError::HashMismatch {
            claimed: tx.hash,
            computed,
        });
    }
    tx.signature
        .verify(&computed, &tx.author)
        .map_err(ValidationError::Signature)
}

/// The kinds a transaction of `kind` may name as its parent, for the error message and check.
pub fn expected_parent(kind: Kind) -> Option<(&'static [Kind], &'static str)> {
    match kind {
        Kind::Proof => Some((&[Kind::Run], "Run")),
        Kind::ProofKey | Kind::Verification => Some((&[Kind::Proof], "Proof")),
        Kind::Cancel => Some((&[Kind::Run], "Run")),
        _ => None,
    }
}

struct Checker<'a> {
    limits: &'a Limits,
}

type Check = Result<(), ValidationError>;

impl Checker<'_> {
    fn len(&self, field: impl FnOnce() -> String, value: &str, max: usize) -> Check {
        if value.len() > max {
            return Err(ValidationError::FieldTooLong {
                field: field(),
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    fn count(&self, field: &str, len: usize, max: usize) -> Check {
        if len > max {
            return Err(ValidationError::TooMany {
                field: field.to_string(),
                len,
                max,
            });
        }
        Ok(())
    }

    fn bytes(&self, field: &str, value: &[u8]) -> Check {
        if value.len() > self.limits.max_proof_bytes {
            return Err(ValidationError::FieldTooLong {
                field: field.to_string(),
                len: value.len(),
                max: self.limits.max_proof_bytes,
            });
        }
        Ok(())
    }

    fn url(&self, field: &str, value: &str) -> Check {
        self.len(|| field.to_string(), value, self.limits.max_url_len)?;
        let bad = |reason: String| ValidationError::BadUrl {
            field: field.to_string(),
            value: value.to_string(),
            reason,
        };
        http_url(value).map_err(bad)
    }

    fn checksum(&self, field: &str, value: &str) -> Check {
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::BadChecksum {
                field: field.to_string(),
                value: truncate(value),
            });
        }
        Ok(())
    }

    fn vm_path(&self, field: &str, value: &str) -> Check {
        self.len(|| field.to_string(), value, self.limits.max_path_len)?;
        if let Some(reason) = vm_path_problem(value) {
            return Err(ValidationError::BadFileName {
                field: field.to_string(),
                value: value.to_string(),
                reason,
            });
        }
        Ok(())
    }

    fn program(&self, field: &str, meta: &ProgramMetadata) -> Check {
        let max_name = self.limits.max_name_len;
        self.len(|| format!("{field}.name"), &meta.name, max_name)?;
        self.len(
            || format!("{field}.image_file_name"),
            &meta.image_file_name,
            max_name,
        )?;
        if let Some(reason) = file_name_problem(&meta.image_file_name) {
            return Err(ValidationError::BadFileName {
                field: format!("{field}.image_file_name"),
                value: meta.image_file_name.clone(),
                reason,
            });
        }
        self.url(&format!("{field}.image_file_url"), &meta.image_file_url)?;
        self.checksum(
            &format!("{field}.image_file_checksum"),
            &meta.image_file_checksum,
        )?;
        if let Some(req) = &meta.resource_requirements {
            let field = format!("{field}.resource_requirements");
            let bad = |reason: String| ValidationError::BadResourceRequest {
                field: field.clone(),
                reason,
            };
            let l = self.limits;
            if req.cpus == 0 || req.cpus > l.max_cpus {
                return Err(bad(format!("cpus must be between 1 and {}", l.max_cpus)));
            }
            if req.mem == 0 || req.mem > l.max_mem_mib {
                return Err(bad(format!(
                    "mem is in MiB and must be between 1 and {}",
                    l.max_mem_mib
                )));
            }
            if req.gpus > l.max_gpus {
                return Err(bad(format!("gpus must be at most {}", l.max_gpus)));
            }
        }
        let computed = meta.compute_hash();
        if computed != meta.hash {
            return Err(ValidationError::ProgramHashMismatch {
                field: format!("{field}.hash"),
                claimed: meta.hash,
                computed,
            });
        }
        Ok(())
    }

    fn files(&self, field: &str, files: &[TxFile]) -> Check {
        self.count(field, files.len(), self.limits.max_files)?;
        for (i, file) in files.iter().enumerate() {
            self.vm_path(&format!("{field}[{i}].name"), &file.name)?;
            self.url(&format!("{field}[{i}].url"), &file.url)?;
        }
        Ok(())
    }

    fn value(&self, field: &str, value: &crate::tx::BigInt) -> Check {
        if value.digits().len() * 32 > self.limits.max_value_bits {
            return Err(ValidationError::ValueTooLarge {
                field: field.to_string(),
                max_bits: self.limits.max_value_bits,
            });
        }
        Ok(())
    }
}

fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

fn check_payload(payload: &Payload, limits: &Limits) -> Check {
    let c = Checker { limits };
    match payload {
        Payload::Empty => Ok(()),
        Payload::Transfer { value, .. } => c.value("payload.Transfer.value", value),
        Payload::Stake { value } => c.value("payload.Stake.value", value),
        Payload::Unstake { value } => c.value("payload.Unstake.value", value),
        Payload::Deploy {
            name,
            prover,
            verifier,
        } => {
            c.len(|| "payload.Deploy.name".into(), name, limits.max_name_len)?;
            c.program("payload.Deploy.prover", prover)?;
            c.program("payload.Deploy.verifier", verifier)
        }
        Payload::Run { workflow } => {
            let steps = &workflow.steps;
            if steps.is_empty() {
                return Err(ValidationError::EmptyWorkflow);
            }
            c.count("payload.Run.workflow.steps", steps.len(), limits.max_steps)?;
            let mut seen: Vec<Hash> = Vec::with_capacity(steps.len());
            for (i, step) in steps.iter().enumerate() {
                let at = format!("payload.Run.workflow.steps[{i}]");
                if let Some(first) = seen.iter().position(|p| *p == step.program) {
                    return Err(ValidationError::DuplicateProgram {
                        field: format!("{at}.program"),
                        program: step.program,
                        first,
                    });
                }
                c.count(&format!("{at}.args"), step.args.len(), limits.max_args)?;
                for (j, arg) in step.args.iter().enumerate() {
                    c.len(|| format!("{at}.args[{j}]"), arg, limits.max_arg_len)?;
                }
                c.count(
                    &format!("{at}.inputs"),
                    step.inputs.len(),
                    limits.max_inputs_per_step,
                )?;
                let mut names = HashSet::new();
                for (j, input) in step.inputs.iter().enumerate() {
                    let at = format!("{at}.inputs[{j}]");
                    let name = match input {
                        ProgramData::Input {
                            file_name,
                            file_url,
                            checksum,
                        } => {
                            c.vm_path(&format!("{at}.Input.file_name"), file_name)?;
                            c.url(&format!("{at}.Input.file_url"), file_url)?;
                            c.checksum(&format!("{at}.Input.checksum"), checksum)?;
                            file_name
                        }
                        ProgramData::Output {
                            source_program,
                            file_name,
                        } => {
                            c.vm_path(&format!("{at}.Output.file_name"), file_name)?;
                            if !seen.contains(source_program) {
                                return Err(ValidationError::OutputWithoutSource {
                                    field: format!("{at}.Output.source_program"),
                                    program: *source_program,
                                });
                            }
                            file_name
                        }
                    };
                    if !names.insert(name.as_str()) {
                        return Err(ValidationError::BadFileName {
                            field: at,
                            value: name.clone(),
                            reason: "two inputs of one step are placed at the same path",
                        });
                    }
                }
                seen.push(step.program);
            }
            Ok(())
        }
        Payload::Proof { proof, files, .. } => {
            c.bytes("payload.Proof.proof", proof)?;
            c.files("payload.Proof.files", files)
        }
        Payload::ProofKey { key, .. } => c.bytes("payload.ProofKey.key", key),
        Payload::Verification {
            verification,
            files,
            ..
        } => {
            c.bytes("payload.Verification.verification", verification)?;
            c.files("payload.Verification.files", files)
        }
        Payload::Cancel { .. } => Ok(()),
    }
}

/// Why `path` is not an acceptable VM path, or `None` when it is: it must be `/workspace/`
/// followed by one or more non-empty parts, none of them `.` or `..`, without control characters.
pub fn vm_path_problem(path: &str) -> Option<&'static str> {
    let Some(rest) = path
        .strip_prefix(WORKSPACE)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Some("a file name is a path inside the VM under /workspace/");
    };
    if rest.is_empty() {
        return Some("a file name must name a file under /workspace/, not the directory itself");
    }
    if path.chars().any(char::is_control) {
        return Some("a file name must not contain control characters");
    }
    for part in rest.split('/') {
        match part {
            "" => return Some("a file name must not contain empty parts (`//` or a trailing `/`)"),
            "." | ".." => return Some("a file name must not contain `.` or `..` parts"),
            _ => {}
        }
    }
    None
}

/// Why `name` is not a plain file name (no directories), or `None` when it is.
pub fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a file name must not be empty");
    }
    if name == "." || name == ".." {
        return Some("a file name must not be `.` or `..`");
    }
    if name.contains('/') || name.contains('\\') {
        return Some("an image file name is a plain file name without directories");
    }
    if name.chars().any(char::is_control) {
        return Some("a file name must not contain control characters");
    }
    None
}

/// Why `value` is not a URL the node can download from (absolute `http` or `https` with a host).
pub fn http_url(value: &str) -> Result<(), String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs can be downloaded, not {}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_paths() {
        assert_eq!(vm_path_problem("/workspace/in.txt"), None);
        assert_eq!(vm_path_problem("/workspace/a/b.txt"), None);
        for bad in [
            "/workspace",
            "/workspace/",
            "/etc/passwd",
            "workspace/x",
            "/workspace/../etc/passwd",
            "/workspace/a/../../x",
            "/workspace/./x",
            "/workspace//x",
            "/workspace/x/",
            "/workspacex/y",
            "/workspace/a\nb",
        ] {
            assert!(vm_path_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name_problem("prover.img"), None);
        for bad in ["", ".", "..", "a/b", "../x", "a\\b", "a\0b"] {
            assert!(file_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
