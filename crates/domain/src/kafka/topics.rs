//! Topic names (prefixed per environment or test) and their creation at startup.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// Fully qualified names of the system's topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    pub email_jobs: String,
    pub followup_events: String,
    pub email_retries: String,
    pub email_events: String,
    pub mailbox_events: String,
    pub webhook_events: String,
}

impl TopicNames {
    pub fn from_config(config: &KafkaConfig) -> Self {
        let p = &config.topic_prefix;
        let t = &config.topics;
        Self {
            email_jobs: format!("{p}{}", t.email_jobs),
            followup_events: format!("{p}{}", t.followup_events),
            email_retries: format!("{p}{}", t.email_retries),
            email_events: format!("{p}{}", t.email_events),
            mailbox_events: format!("{p}{}", t.mailbox_events),
            webhook_events: format!("{p}{}", t.webhook_events),
        }
    }

    pub fn all(&self) -> [&str; 6] {
        [
            &self.email_jobs,
            &self.followup_events,
            &self.email_retries,
            &self.email_events,
            &self.mailbox_events,
            &self.webhook_events,
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("could not create topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// Creates any of `topics` that do not exist yet, with the configured partitions and
/// replication. Existing topics are left as they are (partition counts only grow by hand).
pub async fn ensure_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = super::base_client_config(config).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(super::request_timeout(config)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    Ok(())
}
