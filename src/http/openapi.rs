//! `GET /openapi.json`: the API as OpenAPI 3, generated from the code. Every request and response
//! schema is derived from the Rust type the handler actually (de)serialises (`utoipa::ToSchema`
//! on the domain and boundary types); the operations come from [`ROUTES`], which a test checks
//! against the routes the `configure` functions register.

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, Required, ResponseBuilder, Type};
use utoipa::OpenApi;

use super::error::{ErrorBody, ERROR_TABLE};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Public,
    Operator,
    Advertiser,
    Client,
    OperatorOrAdvertiser,
}

/// What an operation accepts or returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json(&'static str),
    Multipart,
    Text,
    Csv,
    Ndjson,
    Html,
    Binary,
}

/// One documented operation.
pub struct Route {
    pub method: HttpMethod,
    pub path: &'static str,
    pub summary: &'static str,
    pub role: Role,
    pub request: Body,
    pub status: u16,
    pub response: Body,
    /// Extra success content type (invoices in CSV).
    pub alternative: Body,
}

impl Route {
    pub fn method_name(&self) -> &'static str {
        match self.method {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Put => "PUT",
            _ => "OTHER",
        }
    }
}

const fn route(
    method: HttpMethod,
    path: &'static str,
    summary: &'static str,
    role: Role,
    request: Body,
    status: u16,
    response: Body,
) -> Route {
    Route {
        method,
        path,
        summary,
        role,
        request,
        status,
        response,
        alternative: Body::None,
    }
}

use Body::{Binary, Html, Json, Multipart, Text};
use HttpMethod::{Delete, Get, Patch, Post};
use Role::{Advertiser, Client, Operator, OperatorOrAdvertiser, Public};

pub const ROUTES: &[Route] = &[
    route(
        Post,
        "/v1/advertisers",
        "Create an advertiser (its API key is shown once)",
        Operator,
        Json("NewAdvertiser"),
        201,
        Json("AdvertiserCreated"),
    ),
    route(
        Get,
        "/v1/advertisers",
        "List advertisers (no keys)",
        Operator,
        Body::None,
        200,
        Json("AdvertiserList"),
    ),
    route(
        Patch,
        "/v1/advertisers/{id}",
        "Set an advertiser's business-initiated messaging limit",
        Operator,
        Json("AdvertiserPatch"),
        200,
        Json("AdvertiserView"),
    ),
    route(
        Post,
        "/v1/advertisers/{id}/keys",
        "Rotate an advertiser's API key",
        Operator,
        Body::None,
        201,
        Json("ApiKey"),
    ),
    route(
        Get,
        "/v1/moderation/creatives",
        "Creatives by moderation status (default pending)",
        Operator,
        Body::None,
        200,
        Json("CreativeList"),
    ),
    route(
        Post,
        "/v1/creatives/{id}/approve",
        "Approve a creative",
        Operator,
        Body::None,
        200,
        Json("Creative"),
    ),
    route(
        Post,
        "/v1/creatives/{id}/reject",
        "Reject a creative with a reason",
        Operator,
        Json("Rejection"),
        200,
        Json("Creative"),
    ),
    route(
        Post,
        "/v1/campaigns",
        "Create a campaign",
        Advertiser,
        Json("CampaignInput"),
        201,
        Json("CampaignView"),
    ),
    route(
        Get,
        "/v1/campaigns",
        "List the advertiser's campaigns",
        Advertiser,
        Body::None,
        200,
        Json("CampaignList"),
    ),
    route(
        Get,
        "/v1/campaigns/{id}",
        "A campaign",
        Advertiser,
        Body::None,
        200,
        Json("CampaignView"),
    ),
    route(
        Patch,
        "/v1/campaigns/{id}",
        "Change any subset of a campaign's writable fields",
        Advertiser,
        Json("CampaignInput"),
        200,
        Json("CampaignView"),
    ),
    route(
        Delete,
        "/v1/campaigns/{id}",
        "Archive a campaign (history and spend stay)",
        Advertiser,
        Body::None,
        200,
        Json("CampaignView"),
    ),
    route(
        Get,
        "/v1/campaigns/{id}/history",
        "Every change to a campaign, oldest first",
        OperatorOrAdvertiser,
        Body::None,
        200,
        Json("CampaignHistory"),
    ),
    route(
        Post,
        "/v1/campaigns/{id}/creatives",
        "Upload a creative (parts `file` and `meta`)",
        Advertiser,
        Multipart,
        201,
        Json("Creative"),
    ),
    route(
        Get,
        "/v1/campaigns/{id}/creatives",
        "A campaign's creatives",
        Advertiser,
        Body::None,
        200,
        Json("CreativeList"),
    ),
    route(
        Get,
        "/v1/creatives/{id}",
        "A creative",
        Advertiser,
        Body::None,
        200,
        Json("Creative"),
    ),
    route(
        Get,
        "/v1/reports/campaigns/{id}",
        "Counters, spend and reach of a campaign (`from`, `to`: YYYY-MM-DD; `by`: day, hour, country, os, age_band, creative)",
        OperatorOrAdvertiser,
        Body::None,
        200,
        Json("Report"),
    ),
    Route {
        alternative: Body::Csv,
        ..route(
            Get,
            "/v1/invoices/{month}",
            "The advertiser's invoice for a YYYY-MM month (CSV with Accept: text/csv)",
            Advertiser,
            Body::None,
            200,
            Json("Invoice"),
        )
    },
    Route {
        alternative: Body::Ndjson,
        ..route(
            Get,
            "/v1/invoices/{month}/records",
            "Every ledger record the invoice bills, CSV (default) or NDJSON (Accept: application/x-ndjson); its SHA-256 is the invoice digest",
            Advertiser,
            Body::None,
            200,
            Body::Csv,
        )
    },
    route(
        Post,
        "/v1/conversions",
        "Attribute a click-to-chat conversion (messaging platform)",
        Operator,
        Json("ConversionBody"),
        200,
        Json("ConversionResult"),
    ),
    route(
        Get,
        "/v1/conversions",
        "The advertiser's click-to-chat conversions (`campaign_id`, `from`, `to`: YYYY-MM-DD)",
        Advertiser,
        Body::None,
        200,
        Json("ConversionList"),
    ),
    route(
        Post,
        "/v1/messages",
        "Record and rate a business message (messaging platform)",
        Operator,
        Json("MessageBody"),
        200,
        Json("MessageResult"),
    ),
    route(
        Post,
        "/v1/messages/{id}/status",
        "Settle a sent message's charge by its delivery status (messaging platform)",
        Operator,
        Json("StatusBody"),
        200,
        Json("StatusResult"),
    ),
    route(
        Post,
        "/v1/slots",
        "Ad slots for a user's status queue",
        Client,
        Json("SlotRequestBody"),
        200,
        Json("SlotsResponse"),
    ),
    route(
        Post,
        "/v1/events",
        "Report renders, views, clicks, hides and reports",
        Client,
        Json("EventBatch"),
        200,
        Json("EventsResponse"),
    ),
    route(
        Get,
        "/v1/campaigns/{id}/delivery",
        "Why the campaign served or not, from sampled decisions (?from&to: YYYY-MM-DD)",
        OperatorOrAdvertiser,
        Body::None,
        200,
        Json("Delivery"),
    ),
    route(
        Post,
        "/v1/slots/explain",
        "The decision the service would make for a slot request, with every campaign's outcome; no effect",
        Operator,
        Json("SlotRequestBody"),
        200,
        Json("Explanation"),
    ),
    route(
        Post,
        "/v1/forecast",
        "What a proposed campaign (not saved) would have got over the basis period",
        Advertiser,
        Json("CampaignInput"),
        200,
        Json("Forecast"),
    ),
    route(
        Get,
        "/v1/users/{user}",
        "Everything stored about a user, by kind (the right of access)",
        Operator,
        Body::None,
        200,
        Json("UserAccess"),
    ),
    route(
        Delete,
        "/v1/users/{user}",
        "Erase every per-user record; billing records stay, unlinked (the right of erasure)",
        Operator,
        Body::None,
        200,
        Json("Erased"),
    ),
    route(
        Get,
        "/assets/{sha256}",
        "A creative's media (immutable, ETag)",
        Public,
        Body::None,
        200,
        Binary,
    ),
    route(Get, "/healthz", "Liveness", Public, Body::None, 200, Text),
    route(
        Get,
        "/readyz",
        "Readiness: store reachable and catalog loaded",
        Public,
        Body::None,
        200,
        Text,
    ),
    route(
        Get,
        "/metrics",
        "Prometheus metrics",
        Public,
        Body::None,
        200,
        Text,
    ),
    route(
        Get,
        "/openapi.json",
        "This document",
        Public,
        Body::None,
        200,
        Body::Json(""),
    ),
    route(
        Get,
        "/console",
        "The advertiser and operator console",
        Public,
        Body::None,
        200,
        Html,
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "statusads",
        version = "1",
        description = "Sponsored items in the Status feed: decide, cap, count, bill."
    ),
    components(schemas(
        ErrorBody,
        crate::domain::advertiser::NewAdvertiser,
        super::advertisers::AdvertiserCreated,
        super::advertisers::AdvertiserList,
        super::advertisers::ApiKey,
        crate::domain::campaign::CampaignInput,
        crate::domain::campaign::CampaignView,
        super::campaigns::CampaignList,
        super::campaigns::CampaignHistory,
        crate::domain::history::CampaignChange,
        crate::domain::history::FieldChange,
        crate::domain::history::Actor,
        crate::domain::creative::Creative,
        crate::domain::creative::CreativeMeta,
        crate::domain::creative::Rejection,
        super::creatives::CreativeList,
        crate::ledger::report::Report,
        crate::ledger::invoice::Invoice,
        crate::ledger::conversions::ConversionBody,
        super::conversions::ConversionResult,
        crate::ledger::conversions::ConversionList,
        crate::ledger::messages::MessageBody,
        crate::ledger::messages::MessageResult,
        crate::ledger::messages::StatusBody,
        crate::ledger::messages::StatusResult,
        crate::domain::advertiser::AdvertiserPatch,
        crate::domain::advertiser::AdvertiserView,
        crate::domain::slot::SlotRequestBody,
        crate::domain::slot::SlotsResponse,
        crate::domain::event::EventBatch,
        crate::domain::event::EventsResponse,
        crate::domain::slot::Consent,
        crate::privacy::subject::UserAccess,
        crate::privacy::subject::CapsAccess,
        crate::privacy::subject::Renders,
        crate::privacy::subject::ReservationAccess,
        crate::privacy::subject::AdvertiserUntil,
        crate::privacy::subject::CampaignUntil,
        crate::privacy::subject::AdvertiserAt,
        crate::privacy::subject::SessionAccess,
        crate::privacy::subject::ClickAccess,
        crate::privacy::subject::ConversationAccess,
        crate::privacy::subject::Erased,
        crate::insight::Delivery,
        crate::insight::Percentiles,
        crate::insight::Estimated,
        crate::insight::forecast::Forecast,
        crate::insight::forecast::Basis,
        crate::serving::Explanation,
        crate::serving::ExplainedSlot,
        crate::serving::ExplainedCandidate,
    ))
)]
struct Schemas;

fn content(body: Body) -> Option<(&'static str, utoipa::openapi::Content)> {
    let schema_ref = |name: &str| {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(name)))
            .build()
    };
    let string = |format: Option<&str>| {
        let mut object = ObjectBuilder::new().schema_type(Type::String);
        if let Some(format) = format {
            object = object.format(Some(utoipa::openapi::SchemaFormat::Custom(format.into())));
        }
        ContentBuilder::new().schema(Some(object.build())).build()
    };
    Some(match body {
        Body::None => return None,
        Body::Json("") => (
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object).build()))
                .build(),
        ),
        Body::Json(name) => ("application/json", schema_ref(name)),
        Body::Multipart => ("multipart/form-data", schema_ref("CreativeMeta")),
        Body::Text => ("text/plain", string(None)),
        Body::Csv => ("text/csv", string(None)),
        Body::Ndjson => ("application/x-ndjson", string(None)),
        Body::Html => ("text/html", string(None)),
        Body::Binary => ("application/octet-stream", string(Some("binary"))),
    })
}

/// The error statuses an operation can answer, from its role and shape.
fn error_statuses(route: &Route) -> Vec<u16> {
    let mut statuses = Vec::new();
    if route.role != Role::Public {
        statuses.extend([401, 403, 429]);
    }
    if route.request != Body::None {
        // 408: the body did not arrive within `http.body_timeout_ms`.
        statuses.extend([400, 408, 413, 415, 422]);
    }
    if route.path.contains('{') {
        statuses.push(404);
    }
    if route.path.contains("{user}") {
        // A path that is not a user id (1-128 visible ASCII characters).
        statuses.push(422);
    }
    if route.path.starts_with("/v1/") {
        statuses.extend([500, 503]);
    }
    statuses
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Schemas::openapi();
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
    for route in ROUTES {
        let mut operation = OperationBuilder::new().summary(Some(route.summary));
        for name in route
            .path
            .split('/')
            .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        {
            operation = operation.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String).build())),
            );
        }
        if let Some((mime, body)) = content(route.request) {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .content(mime, body)
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let mut ok = ResponseBuilder::new().description(route.summary);
        for body in [route.response, route.alternative] {
            if let Some((mime, body)) = content(body) {
                ok = ok.content(mime, body);
            }
        }
        operation = operation.response(route.status.to_string(), ok.build());
        for status in error_statuses(route) {
            let code = ERROR_TABLE
                .iter()
                .find(|(_, s)| *s == status)
                .map(|(c, _)| *c)
                .unwrap_or("validation error");
            let response = ResponseBuilder::new()
                .description(if status == 422 {
                    "a named validation code (see `error.code`)"
                } else {
                    code
                })
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                );
            operation = operation.response(status.to_string(), response.build());
        }
        if route.role != Role::Public {
            operation =
                operation.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        doc.paths
            .add_path_operation(route.path, vec![route.method.clone()], operation.build());
    }
    doc
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = document()
        .to_json()
        .expect("the OpenAPI document serialises");
    cfg.route(
        "/openapi.json",
        web::get().to(move || {
            let json = json.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(json)
            }
        }),
    );
}
