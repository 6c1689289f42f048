//! JSON responses whose status is decided at run time, documented with each status.

use std::collections::BTreeMap;

use actix_web::body::BoxBody;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder, ResponseError as _};
use paperclip::actix::OperationModifier;
use paperclip::v2::models::{DefaultOperationRaw, DefaultSchemaRaw, Either, Response};
use paperclip::v2::schema::Apiv2Schema;
use serde::Serialize;

fn json(status: StatusCode, value: &impl Serialize) -> HttpResponse<BoxBody> {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse::build(status)
            .content_type("application/json")
            .body(body),
        Err(error) => crate::error::ApiError::internal(error).error_response(),
    }
}

fn document<T: Apiv2Schema>(op: &mut DefaultOperationRaw, status: StatusCode, description: &str) {
    let mut schema = T::schema_with_ref();
    schema.retain_ref();
    op.responses.insert(
        status.as_str().into(),
        Either::Right(Response {
            description: Some(description.into()),
            schema: Some(schema),
            ..Default::default()
        }),
    );
}

fn define<T: Apiv2Schema>(map: &mut BTreeMap<String, DefaultSchemaRaw>) {
    let mut schema = T::schema_with_ref();
    if let Some(name) = schema.name.take() {
        schema.remove_refs();
        map.insert(name, schema);
    }
}

/// A write that either created the resource (201) or found it already there (200, the
/// existing or updated resource); the body is the resource either way.
pub enum Saved<T> {
    Created(T),
    Existing(T),
}

impl<T: Serialize> Responder for Saved<T> {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse<BoxBody> {
        match self {
            Self::Created(value) => json(StatusCode::CREATED, &value),
            Self::Existing(value) => json(StatusCode::OK, &value),
        }
    }
}

impl<T: Apiv2Schema> Apiv2Schema for Saved<T> {
    fn name() -> Option<String> {
        T::name()
    }

    fn raw_schema() -> DefaultSchemaRaw {
        T::raw_schema()
    }
}

impl<T: Apiv2Schema> OperationModifier for Saved<T> {
    fn update_response(op: &mut DefaultOperationRaw) {
        document::<T>(op, StatusCode::CREATED, "Created");
        document::<T>(
            op,
            StatusCode::OK,
            "Already present: the existing (or updated) resource",
        );
    }
}

/// The answer of an endpoint taking one item or a batch: one item answers as [`Saved`], a
/// batch 200 with its summary `B`.
pub enum UpsertResponse<T, B> {
    One(Saved<T>),
    Batch(B),
}

impl<T: Serialize, B: Serialize> Responder for UpsertResponse<T, B> {
    type Body = BoxBody;

    fn respond_to(self, req: &HttpRequest) -> HttpResponse<BoxBody> {
        match self {
            Self::One(saved) => saved.respond_to(req),
            Self::Batch(summary) => json(StatusCode::OK, &summary),
        }
    }
}

impl<T: Apiv2Schema, B: Apiv2Schema> Apiv2Schema for UpsertResponse<T, B> {}

impl<T: Apiv2Schema, B: Apiv2Schema> OperationModifier for UpsertResponse<T, B> {
    fn update_response(op: &mut DefaultOperationRaw) {
        document::<T>(op, StatusCode::CREATED, "One item, created");
        let batch = B::name().unwrap_or_default();
        let item = T::name().unwrap_or_default();
        document::<B>(
            op,
            StatusCode::OK,
            &format!("A batch: `{batch}`. One item that existed and was updated: `{item}`"),
        );
    }

    fn update_definitions(map: &mut BTreeMap<String, DefaultSchemaRaw>) {
        define::<T>(map);
        define::<B>(map);
    }
}
