//! How the node delivers webhooks, and where they may lead.

use std::time::Duration;

use clap::Args;

#[derive(Clone, Debug, Args)]
pub struct WebhookArgs {
    /// Networks webhooks may reach besides public addresses, comma-separated (e.g.
    /// `10.20.0.0/16,192.168.5.7`). Loopback, private, link-local and reserved addresses are
    /// refused unless listed, so a hook cannot reach the node's own network.
    #[arg(long, env = "GEVULOT_WEBHOOK_ALLOW_NETS", default_value = "",
          value_parser = parse_allowed)]
    pub webhook_allow_nets: app::webhooks::Allowed,

    /// Attempts of one notification before the node gives up on it.
    #[arg(long, env = "GEVULOT_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub webhook_max_attempts: u32,

    /// Seconds before the first retry of a failed notification; each next waits twice as long
    /// (at most an hour).
    #[arg(long, env = "GEVULOT_WEBHOOK_RETRY_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub webhook_retry_secs: u64,

    /// Seconds one delivery attempt may take.
    #[arg(long, env = "GEVULOT_WEBHOOK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub webhook_timeout_secs: u64,
}

fn parse_allowed(text: &str) -> Result<app::webhooks::Allowed, String> {
    app::webhooks::Allowed::parse(text)
}

impl WebhookArgs {
    pub fn settings(&self) -> app::webhooks::Settings {
        app::webhooks::Settings {
            allowed: self.webhook_allow_nets.clone(),
            max_attempts: self.webhook_max_attempts,
            retry_backoff: Duration::from_secs(self.webhook_retry_secs),
            timeout: Duration::from_secs(self.webhook_timeout_secs),
        }
    }
}
