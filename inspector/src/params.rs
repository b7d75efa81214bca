//! Query and path parameters, parsed here rather than by serde so that every mistake is
//! the API's own error document naming the parameter: numbers in decimal or `0x` hex (as
//! the monitor takes them), booleans, and a 400 for a parameter the endpoint does not take.

use std::collections::HashMap;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Parameters every endpoint takes: `pretty` indents the JSON.
const COMMON: [&str; 1] = ["pretty"];

/// The query parameters of one request.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    /// Parses `query` (the raw query string) for an endpoint that takes `allowed` (and the
    /// common parameters); an unknown or repeated parameter is refused, by name.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut values = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if key.is_empty() {
                continue;
            }
            if !allowed.contains(&key.as_ref()) && !COMMON.contains(&key.as_ref()) {
                let mut takes: Vec<&str> = allowed.iter().chain(COMMON.iter()).copied().collect();
                takes.sort_unstable();
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_parameter",
                    format!(
                        "unknown query parameter '{key}' (this endpoint takes: {})",
                        takes.join(", ")
                    ),
                ));
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                return Err(ApiError::bad_request(format!(
                    "query parameter '{key}' is given twice"
                )));
            }
        }
        Ok(Params { values })
    }

    /// The raw text of `name`.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A number (decimal or `0x` hex).
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name).map(|t| parse_number(t, name)).transpose()
    }

    /// A 32-bit number (decimal or `0x` hex).
    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.text(name).map(|t| parse_u32(t, name)).transpose()
    }

    /// `true`/`false` (also `1`/`0`).
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.text(name).map(|t| parse_bool(t, name)).transpose()
    }

    /// `?pretty` (no value), `?pretty=true` or `?pretty=1` indents the answer.
    pub fn pretty(&self) -> Result<bool, ApiError> {
        match self.text("pretty") {
            None => Ok(false),
            Some("") => Ok(true),
            Some(t) => parse_bool(t, "pretty"),
        }
    }
}

/// A hex (`0x...`) or decimal number, as the monitor takes them.
pub fn parse_number(text: &str, what: &str) -> Result<u64, ApiError> {
    report::parse_number(text.trim()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{what}: '{text}' is not a number (decimal or 0x hex)"
        ))
    })
}

/// A 32-bit number.
pub fn parse_u32(text: &str, what: &str) -> Result<u32, ApiError> {
    let v = parse_number(text, what)?;
    u32::try_from(v).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "out_of_range",
            format!("{what}: {text} is beyond 32 bits"),
        )
    })
}

fn parse_bool(text: &str, what: &str) -> Result<bool, ApiError> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{what}: '{text}' is not true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_the_monitor() {
        assert_eq!(parse_number("0x1000", "a").unwrap(), 0x1000);
        assert_eq!(parse_number("0X40", "a").unwrap(), 0x40);
        assert_eq!(parse_number("4096", "a").unwrap(), 4096);
        for bad in ["", "0x", "0xzz", "-1", "+1", "1k", "0x1ffffffffffffffff"] {
            let e = parse_number(bad, "a").unwrap_err();
            assert!(e.message.contains("not a number"), "{bad}: {}", e.message);
        }
        assert_eq!(
            parse_u32("0x100000000", "addr").unwrap_err().code,
            "out_of_range"
        );
    }

    #[test]
    fn unknown_and_repeated_parameters_are_refused_by_name() {
        let p = Params::parse(Some("task=0x4&pretty"), &["task"]).unwrap();
        assert_eq!(p.u32("task").unwrap(), Some(4));
        assert!(p.pretty().unwrap());
        let e = Params::parse(Some("task=1&bogus=2"), &["task"]).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::BAD_REQUEST, "unknown_parameter")
        );
        assert!(e.message.contains("'bogus'"), "{}", e.message);
        assert!(e.message.contains("task"), "{}", e.message);
        let e = Params::parse(Some("task=1&task=2"), &["task"]).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
        let p = Params::parse(Some("user=yes"), &["user"]).unwrap();
        assert!(p.boolean("user").unwrap_err().message.contains("'yes'"));
        let p = Params::parse(Some("task=0x"), &["task"]).unwrap();
        assert!(p.u32("task").unwrap_err().message.starts_with("task: '0x'"));
    }
}
