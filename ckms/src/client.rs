//! The KMS REST API as calls: KMIP JSON at `/kmip/2_1`, access rights, version.

use serde_json::Value;

use crate::error::CliError;
use crate::http::{HttpClient, HttpResponse};
use crate::kmip::{self, Ttlv};

/// A KMS client over one keep-alive HTTPS connection.
pub struct KmsClient {
    http: HttpClient,
}

impl KmsClient {
    /// Wrap an HTTP client.
    pub fn new(http: HttpClient) -> Self {
        KmsClient { http }
    }

    /// The underlying HTTP client (for raw requests).
    pub fn http(&mut self) -> &mut HttpClient {
        &mut self.http
    }

    /// `POST /kmip/2_1` with a JSON TTLV request; the JSON TTLV response (the core's codec).
    pub fn kmip(&mut self, request: &Ttlv) -> Result<Ttlv, CliError> {
        let body = zeroize::Zeroizing::new(kmip::encode(request));
        let response = self.http.post("/kmip/2_1", &body)?;
        let response = ok(response)?;
        let body = zeroize::Zeroizing::new(response.body);
        kmip::decode(&body).map_err(|e| CliError::Response(format!("invalid JSON TTLV: {e}")))
    }

    /// `GET path`, JSON answer.
    pub fn get_json(&mut self, path: &str) -> Result<Value, CliError> {
        let response = self.http.get(path)?;
        json_of(response)
    }

    /// `POST path` with a JSON body, JSON answer.
    pub fn post_json(&mut self, path: &str, body: &Value) -> Result<Value, CliError> {
        let body = serde_json::to_vec(body).map_err(|e| CliError::Usage(e.to_string()))?;
        let response = self.http.post(path, &body)?;
        json_of(response)
    }
}

fn ok(response: HttpResponse) -> Result<HttpResponse, CliError> {
    if response.status != 200 {
        return Err(CliError::Server {
            status: response.status,
            message: response.text(),
        });
    }
    Ok(response)
}

fn json_of(response: HttpResponse) -> Result<Value, CliError> {
    let response = ok(response)?;
    serde_json::from_slice(&response.body)
        .map_err(|e| CliError::Response(format!("invalid JSON: {e}")))
}
