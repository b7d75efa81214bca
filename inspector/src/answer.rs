//! The inspector's answers: the monitor's typed documents (`kernel/report`) in the one
//! envelope every answer has, parsed from the stub's JSON (never passed through) and
//! written in their fields' order, compact or with `?pretty`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::live::{Consistency, Moment};

/// Where an answer came from.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The kernel's own monitor, through its gdb stub.
    Stub,
    /// QEMU's reads of physical memory, decoded here by the kernel's own code.
    Qemu,
    /// The kernel's RAM file (its introspection descriptor), read without stopping it and
    /// decoded here by the kernel's own code.
    Live,
}

/// Why an answer did not come from the stub: the state the kernel was found in.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KernelState {
    /// The VM is not running (QMP `stop`, QEMU's own gdbstub, a guest panic).
    Paused,
    /// The VM runs but the kernel's stub does not answer (wedged with interrupts off).
    Unresponsive,
}

impl KernelState {
    /// The state a failed stub query reveals (`None`: another failure).
    pub fn of_error(error: &ApiError) -> Option<KernelState> {
        match error.code.as_str() {
            "vm_paused" => Some(KernelState::Paused),
            "unresponsive" | "timeout" => Some(KernelState::Unresponsive),
            _ => None,
        }
    }
}

/// The fields every answer adds to its document: the one definition of the envelope.
/// A live answer says when it was taken (`seq`, `consistency`, `mid_change`,
/// `retries`); the others have only `source`.
#[derive(Serialize, ToSchema, Clone, Copy, Debug)]
pub struct Envelope {
    /// The descriptor's sequence count the answer is consistent at (live answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// How the live copy is consistent: `consistent` (between two equal even counts),
    /// `stopped` (gdb or the stub holds the kernel), `paused` (QEMU paused the VM),
    /// `brief_stop_qemu` / `brief_stop_stub` (the kernel kept changing: a brief QMP
    /// stop/cont at an even count, or a brief stop by the stub).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// The count was odd: the kernel is stopped in the middle of a change and the answer
    /// shows it half done, as the stub's monitor does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid_change: Option<bool>,
    /// Copies discarded because the kernel changed during them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Where the answer came from.
    pub source: Source,
    /// Present when the stub could not answer: why (`paused` or `unresponsive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelState>,
}

impl Envelope {
    pub fn of(source: Source) -> Envelope {
        Envelope {
            seq: None,
            consistency: None,
            mid_change: None,
            retries: None,
            source,
            kernel: None,
        }
    }

    /// A live answer's envelope.
    pub fn live(moment: &Moment) -> Envelope {
        Envelope {
            seq: Some(moment.seq),
            consistency: Some(moment.consistency),
            mid_change: Some(moment.mid_change),
            retries: Some(moment.retries),
            source: Source::Live,
            kernel: None,
        }
    }
}

/// An answer: the document's own fields (`command` and `schema` first), then the
/// envelope's.
#[derive(Serialize, Debug)]
pub struct Answer<D> {
    #[serde(flatten)]
    pub document: D,
    #[serde(flatten)]
    pub envelope: Envelope,
}

impl<D> Answer<D> {
    pub fn new(document: D, source: Source) -> Answer<D> {
        Answer {
            document,
            envelope: Envelope::of(source),
        }
    }

    /// A document computed from a live snapshot taken at `moment`.
    pub fn live(document: D, moment: &Moment) -> Answer<D> {
        Answer {
            document,
            envelope: Envelope::live(moment),
        }
    }

    /// The answer says the kernel was found `kernel` (why the stub did not answer).
    pub fn noting(mut self, kernel: Option<KernelState>) -> Answer<D> {
        self.envelope.kernel = kernel;
        self
    }
}

/// A JSON answer, written with the value's own field order; indented with `pretty`.
pub struct Reply {
    status: StatusCode,
    body: Result<String, serde_json::Error>,
}

impl Reply {
    pub fn new<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Reply {
        let body = if pretty {
            serde_json::to_string_pretty(value).map(|mut s| {
                s.push('\n');
                s
            })
        } else {
            serde_json::to_string(value)
        };
        Reply {
            status: StatusCode::OK,
            body,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Ok(body) => (
                self.status,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => {
                ApiError::internal(format!("the answer did not serialise: {e}")).into_response()
            }
        }
    }
}

/// Parses a monitor answer into its typed document `D`. The monitor's error answer
/// becomes the API's error; an answer that is not JSON, or not the document the command
/// gives (another command, another schema version, a field of the wrong shape), is a
/// clear `bad_document` error and never reaches the client.
pub fn parse_document<D: DeserializeOwned>(text: &str) -> Result<D, ApiError> {
    let value: Value = serde_json::from_str(text.trim()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "protocol_error",
            format!("the monitor's answer is not JSON: {e}"),
        )
    })?;
    if value.get("error").is_some() && value.get("command") != Some(&Value::from("help")) {
        let error: report::ErrorDoc<'static> = serde_json::from_value(value).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_document",
                format!("the monitor's error answer does not match its schema: {e}"),
            )
        })?;
        return Err(ApiError::from_monitor(
            &error.error.kind.to_string(),
            &error.error.message.to_string(),
        ));
    }
    let command = value
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_document",
            format!(
                "the stub's '{command}' answer does not match the documents of schema {} (kernel/docs/monitor.schema.json): {e}",
                report::SCHEMA
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_the_documents_field_order_and_end_with_the_envelope() {
        let doc = report::catch(&mut false, Some(true));
        let text = serde_json::to_string(&Answer::new(doc, Source::Stub)).unwrap();
        assert_eq!(
            text,
            r#"{"command":"catch","schema":1,"pagefault":true,"previous":false,"changed":true,"source":"stub"}"#
        );
    }

    #[test]
    fn a_stub_answer_that_does_not_parse_is_an_error() {
        let good =
            r#"{"command":"catch","schema":1,"pagefault":true,"previous":false,"changed":true}"#;
        assert!(parse_document::<report::CatchDoc>(good).is_ok());
        for bad in [
            "not json",
            r#"{"command":"catch","schema":2,"pagefault":true,"previous":false,"changed":true}"#,
            r#"{"command":"walk","schema":1,"pagefault":true,"previous":false,"changed":true}"#,
            r#"{"command":"catch","schema":1,"pagefault":"yes","previous":false,"changed":true}"#,
            r#"{"command":"catch","schema":1}"#,
        ] {
            let e = parse_document::<report::CatchDoc>(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_GATEWAY, "{bad}");
            assert!(
                matches!(e.code.as_str(), "bad_document" | "protocol_error"),
                "{bad}: {}",
                e.code
            );
        }
        let e = parse_document::<report::WalkDoc>(
            r#"{"command":"walk","schema":1,"error":{"kind":"no_such_task","message":"no task with pid 99","usage":"walk ADDR [--task PID] [--json]"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::NOT_FOUND, "no_such_task")
        );
    }
}
