//! The effective configuration of `gevulot run`, as the settings page and API show it: every
//! directive with its value and where the value came from. Secrets show only whether they are
//! set; the database URL shows with its password redacted.

use clap::parser::ValueSource;

/// One directive of `gevulot run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable (`GEVULOT_*`), or the flag when it has none.
    pub name: String,
    /// The value in effect; for a secret, `set` or nothing. `None` when unset.
    pub value: Option<String>,
    /// `default`, `environment` or `command line`; `unset` when it has no value.
    pub source: &'static str,
    pub secret: bool,
    /// The directive's one-line help.
    pub help: String,
}

/// The settings of the `run` subcommand in `matches` (of the command `command`).
pub fn of_run(command: &clap::Command, matches: &clap::ArgMatches) -> Vec<Setting> {
    let (Some(run), Some(("run", found))) = (command.find_subcommand("run"), matches.subcommand())
    else {
        return Vec::new();
    };
    let mut settings: Vec<Setting> = run
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|arg| {
            let id = arg.get_id().as_str();
            let name = arg.get_env().map_or_else(
                || format!("--{}", arg.get_long().unwrap_or(id)),
                |e| e.to_string_lossy().into_owned(),
            );
            let raw: Option<Vec<String>> = found
                .get_raw(id)
                .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect());
            let value = raw.filter(|v| !v.is_empty()).map(|v| v.join(","));
            let secret = arg.is_hide_env_values_set();
            let value = match (&value, secret) {
                (Some(_), true) => Some("set".to_string()),
                (Some(url), false) if name == "GEVULOT_DB_URL" => Some(app::store::redact_url(url)),
                _ => value,
            };
            let source = match (value.is_some(), found.value_source(id)) {
                (false, _) => "unset",
                (true, Some(ValueSource::CommandLine)) => "command line",
                (true, Some(ValueSource::EnvVariable)) => "environment",
                (true, _) => "default",
            };
            Setting {
                name,
                value,
                source,
                secret,
                help: arg
                    .get_help()
                    .map(|h| h.to_string().lines().next().unwrap_or("").to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    settings.sort_by(|a, b| a.name.cmp(&b.name));
    settings
}
