//! The STUN and TURN servers handed to browsers and players (`web.ice_servers`): in the
//! page's `config.json` as `RTCIceServer`s, and in WHEP's `Link` headers.

/// One entry of the page's `RTCPeerConnection` `iceServers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageIceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl From<&crate::config::IceServer> for PageIceServer {
    fn from(server: &crate::config::IceServer) -> Self {
        Self {
            urls: server.urls.clone(),
            username: server.username.clone(),
            credential: server.credential.as_ref().map(|c| c.0.clone()),
        }
    }
}
