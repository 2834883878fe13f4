//! What the schema says, shown to people: the defaults in `--help`, and the table of settings in
//! docs/configuration.md, both read from the sections' `Default`s and the flags' help, so
//! neither can drift from the code (a unit test compares the document with what this renders).

use super::flags::Overrides;
use super::sections::Sections;
use clap::{Args, Command};

/// The defaults, as the file would write them, by key (`video.width` → `640`). Keys whose
/// default is worked out at start (the device id, the client id) or empty are absent.
fn defaults() -> Vec<(String, String)> {
    let Ok(table) = toml::Table::try_from(Sections::default()) else {
        return Vec::new();
    };
    let mut defaults = Vec::new();
    for (section, fields) in table {
        let toml::Value::Table(fields) = fields else {
            continue;
        };
        for (field, value) in fields {
            let shown = match value {
                toml::Value::String(text) => text,
                toml::Value::Array(items) if items.is_empty() => continue,
                other => other.to_string(),
            };
            defaults.push((format!("{section}.{field}"), shown));
        }
    }
    defaults
}

fn default_of(key: &str) -> Option<String> {
    defaults()
        .into_iter()
        .find_map(|(k, value)| (k == key).then_some(value))
}

/// Adds each setting's default to its `--help` line, from the sections' `Default`s. The flags
/// themselves carry no clap default: one given nowhere must leave the file's value alone.
pub fn with_defaults_in_help(mut command: Command) -> Command {
    for (key, value) in defaults() {
        if command
            .get_arguments()
            .any(|arg| arg.get_id() == key.as_str())
        {
            command = command.mut_arg(key, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                let arg = arg.help(format!("{help} [default: {value}]"));
                match arg.get_long_help().map(ToString::to_string) {
                    Some(long) => arg.long_help(format!("{long}\n\n[default: {value}]")),
                    None => arg,
                }
            });
        }
    }
    command
}

/// The settings table of docs/configuration.md: one row per flag, in the flags' order.
pub fn settings_table() -> String {
    let command = Overrides::augment_args(Command::new("campeer"));
    let mut table = String::from(
        "| file key | flag | environment | default | meaning |\n|---|---|---|---|---|\n",
    );
    for arg in command.get_arguments() {
        let key = arg.get_id().as_str();
        if !key.contains('.') {
            continue;
        }
        let flag = arg
            .get_long()
            .map(|long| format!("`--{long}`"))
            .unwrap_or_default();
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let default = default_of(key)
            .map(|value| format!("`{value}`"))
            .unwrap_or_else(|| "none".to_owned());
        let meaning = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|help| help.to_string().replace('\n', " ").replace('|', "\\|"))
            .unwrap_or_default();
        table.push_str(&format!(
            "| `{key}` | {flag} | {env} | {default} | {meaning} |\n"
        ));
    }
    table
}

/// The lines between these markers in docs/configuration.md are [`settings_table`]'s.
pub const TABLE_START: &str = "<!-- settings: rendered by src/config/reference.rs -->";
pub const TABLE_END: &str = "<!-- /settings -->";

/// `# key = value` lines of a commented example file (packaging/campeer.toml) whose key has a
/// default, with the line they are on, where the value differs from the default.
pub fn example_lines_off_their_default(text: &str) -> Vec<String> {
    let defaults = defaults();
    let mut section = String::new();
    let mut wrong = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let Some((field, value)) = line
            .strip_prefix("# ")
            .and_then(|setting| setting.split_once(" = "))
        else {
            continue;
        };
        let key = format!("{section}.{}", field.trim());
        let Some((_, default)) = defaults.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        let same = value == default
            || value
                .parse::<f64>()
                .ok()
                .zip(default.parse::<f64>().ok())
                .is_some_and(|(a, b)| a == b);
        if !same {
            wrong.push(format!("{line:?}: the default is {default}"));
        }
    }
    wrong
}
