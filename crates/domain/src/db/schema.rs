//! Diesel's view of the tables created by `migrations/`. Kept by hand (no libpq for
//! `diesel print-schema`); `tests/it/schema.rs` checks it against a migrated database.

diesel::table! {
    workspaces (id) {
        id -> Uuid,
        name -> Text,
        tracking_base_url -> Nullable<Text>,
        settings -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        prefix -> Text,
        key_hash -> Bytea,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mailboxes (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        email -> Text,
        display_name -> Nullable<Text>,
        smtp_host -> Text,
        smtp_port -> Int4,
        smtp_security -> Text,
        smtp_username -> Nullable<Text>,
        smtp_password_encrypted -> Nullable<Bytea>,
        imap_host -> Nullable<Text>,
        imap_port -> Nullable<Int4>,
        imap_security -> Nullable<Text>,
        imap_username -> Nullable<Text>,
        imap_password_encrypted -> Nullable<Bytea>,
        daily_limit -> Int4,
        warmup_enabled -> Bool,
        warmup_start_limit -> Int4,
        warmup_daily_increase -> Int4,
        warmup_started_on -> Nullable<Date>,
        min_interval_seconds -> Int4,
        max_jitter_seconds -> Int4,
        timezone -> Text,
        status -> Text,
        status_reason -> Nullable<Text>,
        last_sent_at -> Nullable<Timestamptz>,
        next_send_slot_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        next_check_at -> Nullable<Timestamptz>,
        check_failures -> Int4,
        max_bounce_rate -> Float8,
        max_complaint_rate -> Float8,
    }
}

diesel::table! {
    contact_attribute_keys (workspace_id, key) {
        workspace_id -> Uuid,
        key -> Text,
    }
}

diesel::table! {
    contacts (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        email -> Text,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        company -> Nullable<Text>,
        title -> Nullable<Text>,
        timezone -> Nullable<Text>,
        attributes -> Jsonb,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    sequences (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        status -> Text,
        open_tracking_enabled -> Bool,
        click_tracking_enabled -> Bool,
        track_url_text_links -> Bool,
        stop_on_reply -> Bool,
        stop_on_auto_reply -> Bool,
        unsubscribe_link -> Bool,
        tracking_domain -> Nullable<Text>,
        send_days -> Array<Int2>,
        window_start -> Time,
        window_end -> Time,
        timezone -> Text,
        use_contact_timezone -> Bool,
        business_days_only -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    steps (id) {
        id -> Uuid,
        sequence_id -> Uuid,
        step_order -> Int4,
        subject -> Text,
        content -> Text,
        wait_days -> Int4,
        wait_hours -> Int4,
        wait_minutes -> Int4,
        thread_with_previous -> Bool,
        variants -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
        order_key -> Int4,
    }
}

diesel::table! {
    sequence_mailboxes (sequence_id, mailbox_id) {
        sequence_id -> Uuid,
        mailbox_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    enrollments (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        sequence_id -> Uuid,
        contact_id -> Uuid,
        mailbox_id -> Nullable<Uuid>,
        current_step -> Int4,
        next_send_at -> Nullable<Timestamptz>,
        status -> Text,
        stop_reason -> Nullable<Text>,
        last_sent_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    due_enrollments (enrollment_id) {
        enrollment_id -> Uuid,
        due_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        enrollment_id -> Uuid,
        step_id -> Uuid,
        step_order -> Int4,
        contact_id -> Uuid,
        mailbox_id -> Uuid,
        variant_index -> Nullable<Int4>,
        status -> Text,
        attempts -> Int4,
        message_id_header -> Nullable<Text>,
        subject -> Nullable<Text>,
        scheduled_at -> Timestamptz,
        worker_id -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        sent_at -> Nullable<Timestamptz>,
        smtp_response -> Nullable<Text>,
        last_error -> Nullable<Text>,
        retry_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        resolution -> Nullable<Text>,
        resolved_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    mailbox_first_sends (mailbox_id) {
        mailbox_id -> Uuid,
        first_sent_at -> Timestamptz,
    }
}

diesel::table! {
    message_leases (message_id) {
        message_id -> Uuid,
        lease_expires_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        message_id -> Nullable<Uuid>,
        enrollment_id -> Nullable<Uuid>,
        contact_id -> Nullable<Uuid>,
        event_type -> Text,
        occurred_at -> Timestamptz,
        is_bot -> Nullable<Bool>,
        bot_reason -> Nullable<Text>,
        url -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        client_ip -> Nullable<Text>,
        payload -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    suppressions (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        email -> Text,
        reason -> Text,
        source -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    mailbox_daily_usage (mailbox_id, day) {
        mailbox_id -> Uuid,
        day -> Date,
        reserved -> Int4,
        updated_at -> Timestamptz,
        day_limit -> Int4,
        last_granted -> Int4,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        topic -> Text,
        message_key -> Nullable<Text>,
        payload -> Jsonb,
        headers -> Jsonb,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    send_jobs (id) {
        id -> Int8,
        message_id -> Uuid,
        workspace_id -> Uuid,
        enrollment_id -> Uuid,
        mailbox_id -> Uuid,
        attempt -> Int4,
        headers -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    step_stats (step_id) {
        step_id -> Uuid,
        sequence_id -> Uuid,
        sent -> Int8,
        failed -> Int8,
        bounced -> Int8,
        opened_human -> Int8,
        opened_bot -> Int8,
        clicked_human -> Int8,
        clicked_bot -> Int8,
        replied -> Int8,
        unsubscribed -> Int8,
        complained -> Int8,
    }
}

diesel::table! {
    sequence_stats (sequence_id) {
        sequence_id -> Uuid,
        enrolled -> Int8,
        active -> Int8,
        paused -> Int8,
        completed -> Int8,
        replied -> Int8,
        bounced -> Int8,
        unsubscribed -> Int8,
        stopped -> Int8,
        failed -> Int8,
    }
}

diesel::table! {
    inbox_watches (mailbox_id) {
        mailbox_id -> Uuid,
        owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        status -> Text,
        last_error -> Nullable<Text>,
        consecutive_failures -> Int4,
        last_checked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    inbox_folder_positions (mailbox_id, folder) {
        mailbox_id -> Uuid,
        folder -> Text,
        uid_validity -> Int8,
        last_uid -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mailbox_oauth (mailbox_id) {
        mailbox_id -> Uuid,
        provider -> Text,
        connected_email -> Text,
        scopes -> Array<Text>,
        refresh_token_encrypted -> Bytea,
        access_token_encrypted -> Nullable<Bytea>,
        access_token_expires_at -> Nullable<Timestamptz>,
        generation -> Int8,
        refreshed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    oauth_authorizations (state_hash) {
        state_hash -> Bytea,
        workspace_id -> Uuid,
        provider -> Text,
        mailbox_id -> Nullable<Uuid>,
        verifier_encrypted -> Bytea,
        settings -> Jsonb,
        login_hint -> Nullable<Text>,
        return_url -> Nullable<Text>,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        url -> Text,
        description -> Nullable<Text>,
        event_types -> Array<Text>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        secret_encrypted -> Bytea,
        previous_secret_encrypted -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        failing_since -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        endpoint_id -> Uuid,
        workspace_id -> Uuid,
        event_id -> Uuid,
        event_type -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Nullable<Timestamptz>,
        occurred_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Uuid,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        latency_ms -> Int4,
        error -> Nullable<Text>,
        response_body -> Nullable<Text>,
    }
}

diesel::joinable!(api_keys -> workspaces (workspace_id));
diesel::joinable!(mailboxes -> workspaces (workspace_id));
diesel::joinable!(mailbox_first_sends -> mailboxes (mailbox_id));
diesel::joinable!(contacts -> workspaces (workspace_id));
diesel::joinable!(sequences -> workspaces (workspace_id));
diesel::joinable!(steps -> sequences (sequence_id));
diesel::joinable!(sequence_mailboxes -> sequences (sequence_id));
diesel::joinable!(sequence_mailboxes -> mailboxes (mailbox_id));
diesel::joinable!(enrollments -> sequences (sequence_id));
diesel::joinable!(enrollments -> contacts (contact_id));
diesel::joinable!(enrollments -> mailboxes (mailbox_id));
// `due_enrollments`, `messages` and `events` have no foreign keys (migrations 000081, 000082:
// triggers keep them); the joins are declared here all the same.
diesel::joinable!(due_enrollments -> enrollments (enrollment_id));
diesel::joinable!(messages -> enrollments (enrollment_id));
diesel::joinable!(messages -> steps (step_id));
diesel::joinable!(events -> messages (message_id));
diesel::joinable!(mailbox_daily_usage -> mailboxes (mailbox_id));
diesel::joinable!(step_stats -> steps (step_id));
diesel::joinable!(inbox_watches -> mailboxes (mailbox_id));
diesel::joinable!(inbox_folder_positions -> inbox_watches (mailbox_id));
diesel::joinable!(mailbox_oauth -> mailboxes (mailbox_id));
diesel::joinable!(oauth_authorizations -> workspaces (workspace_id));
diesel::joinable!(webhook_endpoints -> workspaces (workspace_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    contact_attribute_keys,
    api_keys,
    mailboxes,
    contacts,
    sequences,
    steps,
    sequence_mailboxes,
    enrollments,
    due_enrollments,
    messages,
    message_leases,
    mailbox_first_sends,
    events,
    suppressions,
    mailbox_daily_usage,
    outbox,
    send_jobs,
    step_stats,
    sequence_stats,
    inbox_watches,
    inbox_folder_positions,
    mailbox_oauth,
    oauth_authorizations,
    webhook_endpoints,
    webhook_deliveries,
    webhook_attempts,
);
