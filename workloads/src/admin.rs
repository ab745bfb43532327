//! A simulated admin client: creates the workload's topic with CreateTopics,
//! retrying until the broker says it exists (created now or before).

use broker::seam::{ConnId, Input, Now, Output, TimerId};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::session::{decode_body, Session, SessionEvent, SESSION_TIMER_LIMIT};

const RETRY_TIMER: TimerId = SESSION_TIMER_LIMIT + 1;
const CREATE_TAG: u64 = 1;
/// TOPIC_ALREADY_EXISTS: as good as created.
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub request_timeout_ms: u64,
}

pub struct Admin {
    config: AdminConfig,
    session: Session,
    /// The error code of the last answer, if any (0: created).
    last_error: Option<i16>,
    done: bool,
}

impl Admin {
    pub fn new(config: AdminConfig, conn_base: ConnId) -> Admin {
        let session = Session::new(
            &config.bootstrap,
            "admin",
            conn_base,
            config.request_timeout_ms,
        );
        Admin {
            config,
            session,
            last_error: None,
            done: false,
        }
    }

    /// The topic exists.
    pub fn done(&self) -> bool {
        self.done
    }

    pub fn last_error(&self) -> Option<i16> {
        self.last_error
    }

    pub fn step(&mut self, now: Now, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Start => return self.session.connect(out),
            Input::TimerFired { id: RETRY_TIMER } => return self.create(now, out),
            _ => {}
        }
        for event in self.session.handle(now, &input, out) {
            match event {
                SessionEvent::Connected => self.create(now, out),
                SessionEvent::Response { version, body, .. } => {
                    let code = decode_body::<CreateTopicsResponse>(&body, version)
                        .and_then(|r| r.topics.first().map(|t| t.error_code))
                        .unwrap_or(-1);
                    self.last_error = Some(code);
                    if code == 0 || code == TOPIC_ALREADY_EXISTS {
                        self.done = true;
                        self.session.close(out);
                    } else {
                        out.push(Output::SetTimer {
                            id: RETRY_TIMER,
                            at_nanos: now.after_millis(200),
                        });
                    }
                }
                SessionEvent::Lost { .. } => {}
            }
        }
    }

    fn create(&mut self, now: Now, out: &mut Vec<Output>) {
        if self.done {
            return;
        }
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.config.request_timeout_ms as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.config.topic.clone())))
                .with_num_partitions(self.config.partitions)
                .with_replication_factor(self.config.replication_factor)]);
        self.session.send(
            now,
            ApiKey::CreateTopics,
            5,
            &request,
            Some(CREATE_TAG),
            out,
        );
    }
}
