//! What the messages of one claimed batch share (steps, mailboxes, sequences), looked up once
//! per batch and with each template parsed once, however many emails render it.

use std::collections::HashMap;

use domain::db::sending::{ClaimContext, ClaimMailbox, ClaimSequence, ClaimedMessage, ThreadEmail};
use uuid::Uuid;

use crate::compose::Source;
use crate::prepare::{Shared, Step};

#[derive(Debug, Default)]
pub struct Batch {
    steps: HashMap<(Uuid, Option<i32>), Step>,
    mailboxes: HashMap<Uuid, ClaimMailbox>,
    sequences: HashMap<(Uuid, Uuid), ClaimSequence>,
    thread_subjects: HashMap<String, Source>,
}

impl Batch {
    pub fn new(context: ClaimContext) -> Self {
        Self {
            steps: context
                .steps
                .into_iter()
                .map(|s| {
                    let step = Step {
                        subject: Source::new(s.subject_source),
                        content: Source::new(s.content_source),
                        thread_with_previous: s.thread_with_previous,
                    };
                    ((s.step_id, s.variant_index), step)
                })
                .collect(),
            mailboxes: context.mailboxes.into_iter().map(|m| (m.id, m)).collect(),
            sequences: context
                .sequences
                .into_iter()
                .map(|q| ((q.sequence_id, q.workspace_id), q))
                .collect(),
            thread_subjects: HashMap::new(),
        }
    }

    /// Parses the subjects of the threads' emails, once each.
    pub fn add_thread(&mut self, thread: &[ThreadEmail]) {
        for email in thread {
            if !self.thread_subjects.contains_key(&email.subject_source) {
                self.thread_subjects.insert(
                    email.subject_source.clone(),
                    Source::new(email.subject_source.as_str()),
                );
            }
        }
    }

    /// Whether `message` replies in its enrollment's thread.
    pub fn threads(&self, message: &ClaimedMessage) -> bool {
        self.step(message).is_some_and(|s| s.thread_with_previous)
    }

    pub fn mailbox_email(&self, message: &ClaimedMessage) -> Option<&str> {
        self.mailboxes
            .get(&message.mailbox_id)
            .map(|m| m.email.as_str())
    }

    /// `None` when the message's step, mailbox or sequence was deleted after its claim.
    pub fn shared(&self, message: &ClaimedMessage) -> Option<Shared<'_>> {
        Some(Shared {
            step: self.step(message)?,
            mailbox: self.mailboxes.get(&message.mailbox_id)?,
            sequence: self
                .sequences
                .get(&(message.sequence_id, message.workspace_id))?,
            thread_subjects: &self.thread_subjects,
        })
    }

    fn step(&self, message: &ClaimedMessage) -> Option<&Step> {
        self.steps.get(&(message.step_id, message.variant_index))
    }
}
