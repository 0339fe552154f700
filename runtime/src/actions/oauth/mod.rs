//! The `oauth` and `openid-connect` external action handler.

use std::sync::Arc;

use wicket_engine::compile::ir::ConfigValue;

use super::{ActionEnv, ExternalAction};

/// Compiles the action's config.
pub fn compile(
    kind: &str,
    _config: &ConfigValue,
    _env: &Arc<ActionEnv>,
) -> Result<Arc<dyn ExternalAction>, String> {
    Err(format!("the action `{kind}` is not supported by this edge"))
}
