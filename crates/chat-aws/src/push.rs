//! The [`Push`] on the API Gateway Management API (`PostToConnection`, and
//! `DeleteConnection` to close the sockets of an erased session).
//!
//! The endpoint is configured (`WEBSOCKET_ENDPOINT`, built by the template from the API id,
//! region and stage), never taken from a request's domain, so custom domains work. A
//! `GoneException` (HTTP 410) means the browser is gone: the service then deletes the
//! connection. Other failures are reported and do not stop a fan-out.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use chat_core::ports::{Push, PushError};

/// Pushes frames to WebSocket connections of one API stage.
#[derive(Clone, Debug)]
pub struct ApiGatewayPush {
    client: Client,
}

impl ApiGatewayPush {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Push for ApiGatewayPush {
    async fn push(&self, connection_id: &str, frame: &str) -> Result<(), PushError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.as_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let gone = e.as_service_error().is_some_and(|s| s.is_gone_exception())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 410);
                if gone {
                    Err(PushError::Gone)
                } else {
                    Err(PushError::Failed(crate::error_chain(&e)))
                }
            }
        }
    }

    async fn close(&self, connection_id: &str) -> Result<(), PushError> {
        let result = self
            .client
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone: nothing to close.
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_gone_exception())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 410) =>
            {
                Ok(())
            }
            Err(e) => Err(PushError::Failed(crate::error_chain(&e))),
        }
    }
}
