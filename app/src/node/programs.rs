//! Programs: what is deployed, and the operator's deploys and runs, signed by the node key.

use crate::model::{Actor, AuditAction, Program, Source};
use crate::tx::{
    Hash, Payload, ProgramData, ProgramMetadata, ResourceRequest, Workflow, WorkflowStep,
};
use crate::validate::file_name_problem;

use super::{Node, NodeError};

/// Where a program's image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// Uploaded to this node under `file_name`.
    Upload { checksum: String, file_name: String },
    /// At a URL; the file name defaults to the URL's last segment.
    Url {
        url: String,
        checksum: String,
        file_name: Option<String>,
    },
}

/// A program to deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    pub name: String,
    pub image: ImageSource,
    /// `None`: the default request.
    pub resources: Option<ResourceRequest>,
}

/// A deployed pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The Deploy transaction.
    pub hash: Hash,
    pub prover: Hash,
    pub verifier: Hash,
}

/// Where a step's input file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSource {
    Url {
        url: String,
        checksum: String,
    },
    /// Uploaded to this node under `name`.
    Upload {
        checksum: String,
        name: String,
    },
    /// Written by an earlier step's program.
    FromProgram(Hash),
}

/// An input file of a step: where the program finds it (under `/workspace/`) and its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub file_name: String,
    pub source: InputSource,
}

/// A workflow step to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpec {
    pub program: Hash,
    pub args: Vec<String>,
    pub inputs: Vec<InputSpec>,
}

/// Refuses a name that is not a plain, visible file name. `field` names it in the message.
pub(super) fn check_file_name(field: &str, name: &str) -> Result<(), NodeError> {
    if let Some(problem) = file_name_problem(name) {
        return Err(NodeError::BadFileName(format!("{field}: {problem}")));
    }
    if name.starts_with('.') {
        return Err(NodeError::BadFileName(format!(
            "{field}: a file name must not start with '.'"
        )));
    }
    Ok(())
}

impl Node {
    /// Deployed programs by name then hash.
    pub async fn programs(&self, limit: u32) -> Result<Vec<Program>, NodeError> {
        Ok(self.store().list_programs(limit).await?)
    }

    pub async fn find_program(&self, hash: &Hash) -> Result<Option<Program>, NodeError> {
        Ok(self.store().get_program(hash).await?)
    }

    pub async fn program(&self, hash: &Hash) -> Result<Program, NodeError> {
        self.find_program(hash).await?.ok_or_else(|| {
            NodeError::NotFound(format!(
                "no program {} is deployed on this node",
                hash.to_hex()
            ))
        })
    }

    /// Runs whose workflow uses `program`, newest first.
    pub async fn runs_using(&self, program: &Hash, limit: u32) -> Result<Vec<Hash>, NodeError> {
        Ok(self.store().runs_using_program(program, limit).await?)
    }

    /// Signs and submits a Deploy of `prover` and `verifier` under `name`.
    pub async fn deploy(
        &self,
        name: String,
        prover: &ProgramSpec,
        verifier: &ProgramSpec,
        source: Source,
        by: &Actor,
    ) -> Result<Deployed, NodeError> {
        let result = self
            .sign_deploy(name.clone(), prover, verifier, source)
            .await;
        let detail = match &result {
            Ok(d) => format!(
                "{name}: prover {}, verifier {}",
                d.prover.to_hex(),
                d.verifier.to_hex()
            ),
            Err(e) => format!("{name}: {e}"),
        };
        let target = result.as_ref().ok().map(|d| d.hash.to_hex());
        self.record(
            by,
            AuditAction::Deploy,
            target.as_deref(),
            Some(&detail),
            result.is_ok(),
        )
        .await;
        result
    }

    async fn sign_deploy(
        &self,
        name: String,
        prover: &ProgramSpec,
        verifier: &ProgramSpec,
        source: Source,
    ) -> Result<Deployed, NodeError> {
        let prover = self.program_metadata("prover", prover)?;
        let verifier = self.program_metadata("verifier", verifier)?;
        let (prover_hash, verifier_hash) = (prover.hash, verifier.hash);
        let (tx, _) = self
            .sign_and_submit(
                Payload::Deploy {
                    name,
                    prover,
                    verifier,
                },
                source,
            )
            .await?;
        Ok(Deployed {
            hash: tx.hash,
            prover: prover_hash,
            verifier: verifier_hash,
        })
    }

    /// Signs and submits a Run of `steps`; returns its hash.
    pub async fn start_run(
        &self,
        steps: &[StepSpec],
        source: Source,
        by: &Actor,
    ) -> Result<Hash, NodeError> {
        let result = self.sign_run(steps, source).await;
        let programs: Vec<String> = steps.iter().map(|s| s.program.to_hex()).collect();
        let detail = match &result {
            Ok(_) => format!("{} step(s): {}", steps.len(), programs.join(", ")),
            Err(e) => e.to_string(),
        };
        let target = result.as_ref().ok().map(Hash::to_hex);
        self.record(
            by,
            AuditAction::Run,
            target.as_deref(),
            Some(&detail),
            result.is_ok(),
        )
        .await;
        result
    }

    async fn sign_run(&self, steps: &[StepSpec], source: Source) -> Result<Hash, NodeError> {
        let mut workflow = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let inputs = step
                .inputs
                .iter()
                .enumerate()
                .map(|(j, spec)| self.input(&format!("steps[{i}].inputs[{j}]"), spec))
                .collect::<Result<Vec<_>, _>>()?;
            workflow.push(WorkflowStep {
                program: step.program,
                args: step.args.clone(),
                inputs,
            });
        }
        let (tx, _) = self
            .sign_and_submit(
                Payload::Run {
                    workflow: Workflow { steps: workflow },
                },
                source,
            )
            .await?;
        Ok(tx.hash)
    }

    fn program_metadata(
        &self,
        field: &str,
        spec: &ProgramSpec,
    ) -> Result<ProgramMetadata, NodeError> {
        let (image_file_name, image_file_url, image_file_checksum) = match &spec.image {
            ImageSource::Upload {
                checksum,
                file_name,
            } => {
                check_file_name(&format!("{field}.image_file_name"), file_name)?;
                let (checksum, url) = self.uploaded(field, checksum, file_name)?;
                (file_name.clone(), url, checksum)
            }
            ImageSource::Url {
                url,
                checksum,
                file_name,
            } => {
                let name = match file_name {
                    Some(n) => n.clone(),
                    None => url
                        .rsplit('/')
                        .next()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("image")
                        .to_string(),
                };
                (name, url.clone(), checksum.to_ascii_lowercase())
            }
        };
        let mut meta = ProgramMetadata {
            name: spec.name.clone(),
            hash: Hash::default(),
            image_file_name,
            image_file_url,
            image_file_checksum,
            resource_requirements: spec.resources,
        };
        meta.hash = meta.compute_hash();
        Ok(meta)
    }

    fn input(&self, field: &str, spec: &InputSpec) -> Result<ProgramData, NodeError> {
        Ok(match &spec.source {
            InputSource::Url { url, checksum } => ProgramData::Input {
                file_name: spec.file_name.clone(),
                file_url: url.clone(),
                checksum: checksum.to_ascii_lowercase(),
            },
            InputSource::Upload { checksum, name } => {
                let (checksum, file_url) = self.uploaded(field, checksum, name)?;
                ProgramData::Input {
                    file_name: spec.file_name.clone(),
                    file_url,
                    checksum,
                }
            }
            InputSource::FromProgram(program) => ProgramData::Output {
                source_program: *program,
                file_name: spec.file_name.clone(),
            },
        })
    }

    /// Checks that an upload is on this node; returns its checksum (lowercase hex) and URL.
    fn uploaded(
        &self,
        field: &str,
        checksum: &str,
        name: &str,
    ) -> Result<(String, String), NodeError> {
        let checksum = checksum.to_ascii_lowercase();
        let held = Hash::from_hex(&checksum).filter(|hash| {
            file_name_problem(name).is_none() && self.data_dir().upload(hash, name).is_file()
        });
        match held {
            Some(hash) => Ok((
                checksum,
                format!(
                    "{}/{}",
                    self.file_base_url(),
                    crate::data_dir::DataDir::upload_url_path(&hash, name)
                ),
            )),
            None => Err(NodeError::UnknownUpload(format!(
                "{field}: no upload {name:?} with checksum {checksum} on this node; upload it first"
            ))),
        }
    }
}
