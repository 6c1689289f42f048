//! The event types a webhook endpoint can ask for: what the platform has recorded, never raw
//! reports (issue 18 lists them with their payloads).

/// Every event type, in the order the API documents them.
pub const ALL: [&str; 15] = [
    "message.sent",
    "message.bounced",
    "message.failed",
    "message.opened",
    "message.clicked",
    "contact.replied",
    "contact.auto_replied",
    "contact.unsubscribed",
    "contact.complained",
    "enrollment.completed",
    "enrollment.stopped",
    "mailbox.error",
    "mailbox.reconnect_required",
    "webhook.test",
    "webhook.disabled",
];

/// Whether `name` is one of [`ALL`].
pub fn is_known(name: &str) -> bool {
    ALL.contains(&name)
}

/// Whether an endpoint that asked for `subscribed` (empty: everything) gets `event_type`.
/// `webhook.test` goes to the endpoint it tests whatever it asked for.
pub fn wants(subscribed: &[String], event_type: &str) -> bool {
    subscribed.is_empty()
        || event_type == "webhook.test"
        || subscribed.iter().any(|name| name == event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_subscription_is_everything() {
        assert!(wants(&[], "contact.replied"));
        let some = vec!["message.sent".to_owned()];
        assert!(wants(&some, "message.sent"));
        assert!(!wants(&some, "contact.replied"));
        assert!(wants(&some, "webhook.test"));
    }

    #[test]
    fn names_are_known_exactly() {
        assert!(ALL.iter().all(|name| is_known(name)));
        assert!(!is_known("message.Sent"));
        assert!(!is_known("message"));
    }
}
