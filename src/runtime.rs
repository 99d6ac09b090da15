//! What a [`Kit`](crate::Kit) carries beyond its database and store: the
//! hooks its components call, the registry of what it spawned, and the
//! operating settings (defaults for senders and consumers, when a consumer
//! counts as stalled, how far lags are counted). Shared by the kit's clones.

use std::time::Duration;

use crate::consumer::ConsumerDefaults;
use crate::hooks::Hooks;
use crate::metrics::registry::Registry;
use crate::outbox::SenderConfig;

/// Default of [`KitBuilder::stalled_after`](crate::KitBuilder::stalled_after).
pub(crate) const DEFAULT_STALLED_AFTER: Duration = Duration::from_secs(60);
/// Default of [`KitBuilder::lag_count_limit`](crate::KitBuilder::lag_count_limit).
pub(crate) const DEFAULT_LAG_COUNT_LIMIT: u32 = 1000;

#[derive(Debug, Default)]
pub(crate) struct Runtime {
    pub(crate) hooks: Hooks,
    pub(crate) registry: Registry,
    pub(crate) settings: Settings,
}

/// The kit's operating settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) stalled_after: Duration,
    pub(crate) lag_count_limit: u32,
    pub(crate) consumer_defaults: ConsumerDefaults,
    pub(crate) sender_config: SenderConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            stalled_after: DEFAULT_STALLED_AFTER,
            lag_count_limit: DEFAULT_LAG_COUNT_LIMIT,
            consumer_defaults: ConsumerDefaults::default(),
            sender_config: SenderConfig::default(),
        }
    }
}
