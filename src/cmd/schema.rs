//! `wicket schema`: print the JSON Schema of policy files, or the Markdown reference.

use anyhow::Result;

/// Prints the JSON Schema (draft 2020-12) generated from the action table, or with
/// `markdown` the Markdown reference of actions and diagnostic codes.
pub fn run(markdown: bool) -> Result<()> {
    if markdown {
        print!("{}", wicket_policy::docs::actions_markdown());
        return Ok(());
    }
    let schema = wicket_policy::jsonschema::json_schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(())
}
