//! Who may talk to the daemon: loopback by default, a bearer token when listening elsewhere, no foreign `Host` headers.
//!
//! A page on any web site can make a browser send requests to 127.0.0.1 (DNS
//! rebinding: its own name resolves to 127.0.0.1); the `Host` header then still names
//! that site, so only our own names are accepted.

use std::net::{IpAddr, SocketAddr};

use subtle::ConstantTimeEq;

/// The checks, fixed at start-up.
#[derive(Clone, Debug)]
pub struct Guard {
    /// Host header values accepted (lowercase, with and without the port).
    allowed_hosts: Vec<String>,
    token: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    ForeignHost(String),
    MissingToken,
    BadToken,
}

impl Guard {
    /// The guard for a daemon listening on `listen`; `extra_hosts` are more names to accept.
    pub fn new(listen: SocketAddr, token: Option<String>, extra_hosts: &[String]) -> Guard {
        let port = listen.port();
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
        if !listen.ip().is_unspecified() {
            names.push(match listen.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        names.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut allowed_hosts = Vec::new();
        for name in names {
            allowed_hosts.push(format!("{name}:{port}"));
            allowed_hosts.push(name);
        }
        Guard {
            allowed_hosts,
            token,
        }
    }

    /// Whether listening on `listen` without a token is allowed: loopback only.
    pub fn needs_token(listen: &SocketAddr) -> bool {
        !listen.ip().is_loopback()
    }

    /// Checks the `Host` header (absent is accepted: no browser omits it).
    pub fn check_host(&self, host: Option<&str>) -> Result<(), Refusal> {
        match host {
            None => Ok(()),
            Some(h)
                if self
                    .allowed_hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(h.trim())) =>
            {
                Ok(())
            }
            Some(h) => Err(Refusal::ForeignHost(h.to_string())),
        }
    }

    /// Checks `Authorization: Bearer TOKEN`, in constant time, when a token is set.
    pub fn check_token(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let given = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .ok_or(Refusal::MissingToken)?;
        // ct_eq on slices of different lengths is false (the length is not secret).
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(token: Option<&str>) -> Guard {
        Guard::new(
            "127.0.0.1:8321".parse().unwrap(),
            token.map(String::from),
            &[],
        )
    }

    #[test]
    fn accepts_own_names_and_refuses_foreign_hosts() {
        let g = guard(None);
        assert_eq!(g.check_host(Some("127.0.0.1:8321")), Ok(()));
        assert_eq!(g.check_host(Some("LOCALHOST:8321")), Ok(()));
        assert_eq!(g.check_host(Some("localhost")), Ok(()));
        assert_eq!(g.check_host(None), Ok(()));
        assert!(g.check_host(Some("evil.example:8321")).is_err());
        assert!(g.check_host(Some("127.0.0.1.evil.example")).is_err());
    }

    #[test]
    fn token_is_required_when_set() {
        let g = guard(Some("s3cret"));
        assert_eq!(g.check_token(None), Err(Refusal::MissingToken));
        assert_eq!(g.check_token(Some("Bearer wrong")), Err(Refusal::BadToken));
        assert_eq!(g.check_token(Some("Bearer s3cret")), Ok(()));
        assert_eq!(guard(None).check_token(None), Ok(()));
    }

    #[test]
    fn only_loopback_listens_without_a_token() {
        assert!(!Guard::needs_token(&"127.0.0.1:1".parse().unwrap()));
        assert!(!Guard::needs_token(&"[::1]:1".parse().unwrap()));
        assert!(Guard::needs_token(&"0.0.0.0:1".parse().unwrap()));
        assert!(Guard::needs_token(&"192.0.2.1:1".parse().unwrap()));
    }
}
