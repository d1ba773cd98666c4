//! Configuration: defaults, then a TOML file, then `HUIYUAN_*` environment variables, then
//! command-line flags — each overriding the one before.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use huiyuan_core::clock::{Clock, OffsetClock, SystemClock};
use huiyuan_core::CoreConfig;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Folder of the embedded SQLite database and the master key file.
    pub data: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded database.
    pub database: Option<String>,
    /// The master key (base64). When absent, `<data>/master.key` is used.
    pub master_key: Option<String>,
    /// `json` (default) or `text`.
    pub log_format: String,
    /// PostgreSQL pool size per process.
    pub database_max_connections: u32,
    pub rate_limit_per_minute: u32,
    /// Sign-in attempts a minute per client address (API and console).
    pub sign_in_per_minute: u32,
    /// Failed sign-ins after which an account is closed to attempts for up to 15 minutes.
    pub sign_in_failures_per_account: u32,
    pub body_limit_bytes: usize,
    /// How long an authenticated API key or session is trusted before it is read again; a
    /// key revoked through another process stops working within this time. 0: every request.
    pub credential_cache_seconds: u32,
    /// How many days back a sale sent live (API, till) may be dated; older history is
    /// imported. 0: no backdating at all.
    pub backdate_days: u16,
    /// Start the clock at this instant and let it run on from there: `now`, an RFC 3339 instant
    /// or a date (10:00 in UTC+8). For rehearsing a date on a copy of the data (a member day, a
    /// year end) and for the tests; never on a live installation, whose records would carry the
    /// rehearsed times. Unset: the system clock.
    pub clock_start: Option<String>,
    /// `clock_start` less the system clock, worked out once when the configuration is loaded,
    /// so that every `Core` this process makes (the demo's, the server's) shares one timeline.
    #[serde(skip)]
    clock_offset: Option<time::Duration>,
}

impl Default for Config {
    fn default() -> Self {
        let api = huiyuan_api::ApiConfig::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            data: None,
            database: None,
            master_key: None,
            log_format: "json".into(),
            database_max_connections: 16,
            rate_limit_per_minute: api.rate_limit_per_minute,
            sign_in_per_minute: CoreConfig::default().sign_in_per_minute,
            sign_in_failures_per_account: CoreConfig::default().sign_in_failures_per_account,
            body_limit_bytes: api.body_limit_bytes,
            credential_cache_seconds: 5,
            backdate_days: CoreConfig::default().backdate_window.whole_days() as u16,
            clock_start: None,
            clock_offset: None,
        }
    }
}

/// `HUIYUAN_*` variables that are not settings: a flag's environment fallback, or the tests' and
/// benchmarks' own. Any other unknown `HUIYUAN_*` variable is refused as a likely typo.
const NOT_SETTINGS: &[&str] = &[
    "admin_password",
    "test_database_url",
    "bench_database_url",
    "bench_admin_url",
    "bench_key",
    "schemathesis",
    "chromium",
    "test_clock_start",
];

impl Config {
    /// Loads the layers; `file` is `--config`, else `huiyuan.toml` in the working folder if present.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => fig = fig.merge(Toml::file_exact(f)),
            None => fig = fig.merge(Toml::file("huiyuan.toml")),
        }
        let mut config: Self = fig
            .merge(Env::prefixed("HUIYUAN_").ignore(NOT_SETTINGS))
            .extract()
            .map_err(Box::new)?;
        if let Some(start) = config.clock_start.as_deref() {
            let start = huiyuan_core::clock::parse_start(start)
                .map_err(|e| Box::new(figment::Error::from(format!("clock_start: {e}"))))?;
            config.clock_offset = Some(start - time::OffsetDateTime::now_utc());
        }
        Ok(config)
    }

    /// The clock the engine runs on: the system's, or the one `clock_start` started.
    pub fn clock(&self) -> Arc<dyn Clock> {
        match self.clock_offset {
            Some(offset) => {
                let clock = OffsetClock::default();
                clock.advance(offset);
                Arc::new(clock)
            }
            None => Arc::new(SystemClock),
        }
    }

    pub fn api(&self) -> huiyuan_api::ApiConfig {
        huiyuan_api::ApiConfig {
            body_limit_bytes: self.body_limit_bytes,
            rate_limit_per_minute: self.rate_limit_per_minute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // figment's Jail fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn file_then_environment_and_typos_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "huiyuan.toml",
                "listen = \"0.0.0.0:9000\"\nrate_limit_per_minute = 10\n",
            )?;
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!((c.listen.as_str(), c.rate_limit_per_minute), ("0.0.0.0:9000", 10));
            assert_eq!(
                c.body_limit_bytes,
                Config::default().body_limit_bytes,
                "defaults fill the rest"
            );
            jail.set_env("HUIYUAN_RATE_LIMIT_PER_MINUTE", "20");
            jail.set_env("HUIYUAN_ADMIN_PASSWORD", "a flag's fallback, not a setting");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.rate_limit_per_minute, 20, "the environment overrides the file");
            jail.create_file("typo.toml", "listne = \"x\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).expect_err("unknown key");
            assert!(err.to_string().contains("listne"), "{err}");
            let err = Config::load(Some(Path::new("missing.toml"))).expect_err("an explicit file must exist");
            assert!(err.to_string().contains("missing.toml"), "{err}");
            assert!(c.clock_start.is_none(), "the system clock by default");
            jail.set_env("HUIYUAN_CLOCK_START", "2026-12-08T04:00:00+08:00");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let now = c.clock().now();
            let start = time::macros::datetime!(2026-12-08 04:00 +08:00);
            assert!(now >= start && now - start < time::Duration::minutes(1), "{now}");
            jail.set_env("HUIYUAN_CLOCK_START", "the 8th");
            let err = Config::load(None).expect_err("not an instant");
            assert!(err.to_string().contains("clock_start"), "{err}");
            jail.set_env("HUIYUAN_TEST_CLOCK_START", "2027-01-31");
            jail.set_env("HUIYUAN_CLOCK_START", "now");
            Config::load(None).map_err(|e| e.to_string())?;
            Ok(())
        });
    }
}
