//! The `outpost` CLI's client for control's admin API: where control is, the bearer token, typed calls and their errors.

use std::path::PathBuf;

use outpost_proto::api::ApiError;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How to reach control, from flags, then the environment, then the config file.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlArgs {
    /// Control's admin API, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "OUTPOST_CONTROL_URL", global = true)]
    pub control_url: Option<String>,
    /// Admin token printed by `outpost-control init`.
    #[arg(long, env = "OUTPOST_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

/// `~/.config/outpost/config.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    control_url: Option<String>,
    token: Option<String>,
}

/// A failed CLI call, with the process exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input (manifest, bundle, arguments): exit 1.
    #[error("{0}")]
    Input(String),
    /// Control answered with an error: exit 1.
    #[error("control answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// Control's message.
        message: String,
    },
    /// Control could not be reached: exit 2.
    #[error("cannot reach control at {url}: {message}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why.
        message: String,
    },
    /// Nodes refused the deploy (it was rolled back): exit 3.
    #[error("{0}")]
    Refused(String),
    /// Not every node applied in time: exit 4.
    #[error("{0}")]
    Timeout(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input(_) | CliError::Api { .. } => 1,
            CliError::Unreachable { .. } => 2,
            CliError::Refused(_) => 3,
            CliError::Timeout(_) => 4,
        }
    }
}

/// An authenticated client of one control service.
pub struct Control {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Control {
    /// Resolves the URL and token (flag, env, `~/.config/outpost/config.toml`).
    pub fn from_args(args: &ControlArgs) -> Result<Control, CliError> {
        let file = config_path()
            .and_then(|path| std::fs::read_to_string(&path).ok().map(|text| (path, text)))
            .map(|(path, text)| {
                toml::from_str::<CliConfig>(&text)
                    .map_err(|error| CliError::Input(format!("{}: {error}", path.display())))
            })
            .transpose()?
            .unwrap_or_default();
        let base = args
            .control_url
            .clone()
            .or(file.control_url)
            .unwrap_or_else(|| "http://127.0.0.1:7070".into());
        let token = args.token.clone().or(file.token).ok_or_else(|| {
            CliError::Input(
                "no admin token: pass --token, set OUTPOST_TOKEN, or put `token = \"...\"` in ~/.config/outpost/config.toml".into(),
            )
        })?;
        Ok(Control {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    /// `GET` a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST` (or another method) with a JSON body.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        self.send(self.http.request(method, self.url(path)).json(body))
            .await
    }

    /// `DELETE` a resource.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Whether `HEAD path` answers 200.
    pub async fn exists(&self, path: &str) -> Result<bool, CliError> {
        let response = self
            .http
            .head(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| self.unreachable(error))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(CliError::Api {
                status,
                message: "unexpected answer to HEAD".into(),
            }),
        }
    }

    /// `GET` raw bytes, with the response headers.
    pub async fn get_bytes(&self, path: &str) -> Result<(HeaderMap, Vec<u8>), CliError> {
        let (_, headers, bytes) = self.send_raw(self.http.get(self.url(path))).await?;
        Ok((headers, bytes))
    }

    /// `PUT` raw bytes with extra request headers.
    pub async fn put_bytes_with_headers<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<T, CliError> {
        let mut request = self
            .http
            .put(self.url(path))
            .header("content-type", "application/octet-stream");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(request.body(bytes)).await
    }

    /// `PUT` raw bytes.
    pub async fn put_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<T, CliError> {
        self.send(
            self.http
                .put(self.url(path))
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, error: reqwest::Error) -> CliError {
        CliError::Unreachable {
            url: self.base.clone(),
            message: error.to_string(),
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CliError> {
        let (status, _, bytes) = self.send_raw(request).await?;
        serde_json::from_slice(&bytes).map_err(|error| CliError::Api {
            status,
            message: format!("unexpected answer: {error}"),
        })
    }

    /// Sends an authenticated request; a non-success status becomes [`CliError::Api`]
    /// with control's message.
    async fn send_raw(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), CliError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| self.unreachable(error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.unreachable(error))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|body| body.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(CliError::Api { status, message });
        }
        Ok((status, headers, bytes.to_vec()))
    }
}

fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("outpost").join("config.toml"))
}
