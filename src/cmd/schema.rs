//! `wicket schema`: print the JSON Schema of policy files.

use anyhow::Result;

/// Prints the JSON Schema (draft 2020-12) generated from the action table.
pub fn run() -> Result<()> {
    let schema = wicket_policy::jsonschema::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
