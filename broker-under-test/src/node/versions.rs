//! ApiVersions, and the UNSUPPORTED_VERSION answers to requests at versions
//! this broker does not serve.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{MetadataResponse, MetadataResponseTopic};
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest,
};

use super::{decode, HandlerResult, Node, ReplyTo};
use crate::protocol::{FrameError, RawRequest, SUPPORTED_APIS};
use crate::seam::Output;

fn advertised_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}

impl Node {
    pub(super) fn handle_api_versions(
        &mut self,
        reply: ReplyTo,
        _raw: &RawRequest,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        // The body (client software name and version, v3+) is informational;
        // a body that does not parse still gets the list, as Kafka does.
        let response = ApiVersionsResponse::default().with_api_keys(advertised_versions());
        self.respond(reply, &response, out);
        Ok(())
    }

    /// Answer UNSUPPORTED_VERSION in a form the client can read, or close the
    /// connection when no such form exists (a version even kafka-protocol
    /// cannot decode).
    pub(super) fn reject_version(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        out: &mut Vec<Output>,
    ) {
        let code = ResponseError::UnsupportedVersion.code();
        tracing::info!(
            conn = reply.conn,
            api = ?raw.api_key,
            version = raw.api_version,
            "unsupported API version"
        );
        if raw.api_key == ApiKey::ApiVersions {
            // Kafka answers an unknown ApiVersions version in the v0 layout,
            // listing what it supports, so the client can pick again.
            let response = ApiVersionsResponse::default()
                .with_error_code(code)
                .with_api_keys(advertised_versions());
            let v0 = ReplyTo {
                version: 0,
                ..reply
            };
            return self.respond(v0, &response, out);
        }
        let known = raw.api_key.valid_versions();
        let result = if raw.api_version < known.min || raw.api_version > known.max {
            Err(FrameError::Malformed(format!(
                "{:?} v{} is not a version this broker can even parse",
                raw.api_key, raw.api_version
            )))
        } else {
            self.unsupported_answer(reply, raw, code, out)
        };
        if let Err(e) = result {
            tracing::warn!(conn = reply.conn, error = %e, "closing connection");
            self.conns.remove(&reply.conn);
            out.push(Output::Close { conn: reply.conn });
        }
    }

    /// An answer to `raw` in which every part carries `code`.
    pub(super) fn unsupported_answer(
        &mut self,
        reply: ReplyTo,
        raw: &RawRequest,
        code: i16,
        out: &mut Vec<Output>,
    ) -> HandlerResult {
        match raw.api_key {
            ApiKey::Produce => {
                let request: ProduceRequest = decode(raw)?;
                let response = ProduceResponse::default().with_responses(
                    request
                        .topic_data
                        .into_iter()
                        .map(|t| {
                            TopicProduceResponse::default()
                                .with_name(t.name)
                                .with_topic_id(t.topic_id)
                                .with_partition_responses(
                                    t.partition_data
                                        .iter()
                                        .map(|p| {
                                            PartitionProduceResponse::default()
                                                .with_index(p.index)
                                                .with_error_code(code)
                                                .with_base_offset(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
                self.respond(reply, &response, out);
            }
            ApiKey::Fetch => {
                let request: FetchRequest = decode(raw)?;
                let response = FetchResponse::default()
                    .with_error_code(code)
                    .with_responses(
                        request
                            .topics
                            .into_iter()
                            .map(|t| {
                                FetchableTopicResponse::default()
                                    .with_topic(t.topic)
                                    .with_topic_id(t.topic_id)
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                PartitionData::default()
                                                    .with_partition_index(p.partition)
                                                    .with_error_code(code)
                                                    .with_high_watermark(-1)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                self.respond(reply, &response, out);
            }
            ApiKey::ListOffsets => {
                let request: ListOffsetsRequest = decode(raw)?;
                let response = ListOffsetsResponse::default().with_topics(
                    request
                        .topics
                        .into_iter()
                        .map(|t| {
                            ListOffsetsTopicResponse::default()
                                .with_name(t.name)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            ListOffsetsPartitionResponse::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code)
                                                .with_offset(-1)
                                                .with_timestamp(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
                self.respond(reply, &response, out);
            }
            ApiKey::Metadata => {
                let request: MetadataRequest = decode(raw)?;
                let topics = request
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        MetadataResponseTopic::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_error_code(code)
                    })
                    .collect();
                let response = MetadataResponse::default()
                    .with_topics(topics)
                    .with_error_code(code);
                self.respond(reply, &response, out);
            }
            ApiKey::CreateTopics => {
                let request: CreateTopicsRequest = decode(raw)?;
                let response = CreateTopicsResponse::default().with_topics(
                    request
                        .topics
                        .into_iter()
                        .map(|t| {
                            CreatableTopicResult::default()
                                .with_name(t.name)
                                .with_error_code(code)
                        })
                        .collect(),
                );
                self.respond(reply, &response, out);
            }
            ApiKey::DeleteTopics => {
                let request: DeleteTopicsRequest = decode(raw)?;
                let mut responses: Vec<DeletableTopicResult> = request
                    .topic_names
                    .into_iter()
                    .map(|n| {
                        DeletableTopicResult::default()
                            .with_name(Some(n))
                            .with_error_code(code)
                    })
                    .collect();
                responses.extend(request.topics.into_iter().map(|t| {
                    DeletableTopicResult::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_error_code(code)
                }));
                let response = DeleteTopicsResponse::default().with_responses(responses);
                self.respond(reply, &response, out);
            }
            other => {
                return Err(FrameError::UnknownApiKey(other as i16));
            }
        }
        Ok(())
    }
}
