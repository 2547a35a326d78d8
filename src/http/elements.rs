//! Element access on a running pipeline: list its elements, read and set properties (typed
//! conversion from JSON), send end-of-stream.
//!
//! GStreamer objects are thread-safe; the runner still owns the pipeline's lifecycle, these
//! handlers only query and set properties, on the blocking pool.

use super::{ApiError, AppState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gst::prelude::*;
use serde::Serialize;
use serde_json::Value as Json_;

#[derive(Serialize)]
pub struct ElementInfo {
    pub name: String,
    /// `/pipeline/bin/element`.
    pub path: String,
    /// The factory it was made from, e.g. `x264enc`.
    pub factory: Option<String>,
    pub state: String,
}

#[derive(Serialize)]
pub struct PropertyInfo {
    pub name: String,
    /// What the value takes, e.g. `unsigned integer 0..=2048000` or `enum: baseline, main`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Null when the property cannot be read or has no JSON form.
    pub value: Json_,
    pub readable: bool,
    pub writable: bool,
    /// The highest state in which a change takes effect ("playing", "paused", "ready"), or
    /// null when it only counts before the pipeline starts.
    pub mutable_in: Option<&'static str>,
    pub blurb: Option<String>,
}

/// The running pipeline of `name`, or why there is none.
fn running(state: &AppState, name: &str) -> Result<gst::Pipeline, ApiError> {
    match state.supervisor.live(name)? {
        Some(p) => Ok(p),
        None => Err(not_running(state, name)),
    }
}

fn not_running(state: &AppState, name: &str) -> ApiError {
    let now = state
        .supervisor
        .get(name)
        .map(|s| s.state.as_str())
        .unwrap_or("unknown");
    ApiError(
        StatusCode::CONFLICT,
        format!(
            "pipeline `{name}` is not running (state: {now}); elements exist only while it runs (a published stream's are its publisher's, while one publishes)"
        ),
    )
}

/// The running pipeline of `name` (of a published stream: its publishers' pipelines) and
/// its readers' pipelines (a record output's muxer and file sink live in its reader's), where
/// elements are looked up.
fn running_all(state: &AppState, name: &str) -> Result<Vec<gst::Pipeline>, ApiError> {
    let mut all = match state.supervisor.live(name)? {
        Some(p) => vec![p],
        None => state.webrtc.publisher_pipelines(name),
    };
    if all.is_empty() {
        return Err(not_running(state, name));
    }
    all.extend(state.supervisor.reader_pipelines(name));
    Ok(all)
}

/// The DOT of a pipeline and its readers' pipelines (the first of `pipelines` is the
/// pipeline itself).
fn graph(pipelines: &[gst::Pipeline]) -> String {
    match pipelines.split_first() {
        Some((main, readers)) => crate::graph::dot_with_readers(main, readers),
        None => String::new(),
    }
}

fn element(pipelines: &[gst::Pipeline], name: &str) -> Result<gst::Element, ApiError> {
    if let Some(found) = pipelines.iter().find_map(|p| p.by_name(name)) {
        return Ok(found);
    }
    let mut names: Vec<String> = pipelines
        .iter()
        .flat_map(|p| p.iterate_elements().into_iter().flatten())
        .map(|e| e.name().to_string())
        .collect();
    names.sort();
    Err(ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "pipeline `{}` has no element `{name}`; its elements: {}",
            pipelines
                .first()
                .map(|p| p.name().to_string())
                .unwrap_or_default(),
            names.join(", ")
        ),
    ))
}

fn property(element: &gst::Element, prop: &str) -> Result<glib::ParamSpec, ApiError> {
    element.find_property(prop).ok_or_else(|| {
        let names: Vec<String> = element
            .list_properties()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        let close = names
            .iter()
            .filter(|n| strsim::jaro_winkler(n, prop) > 0.85)
            .max_by(|a, b| strsim::jaro_winkler(a, prop).total_cmp(&strsim::jaro_winkler(b, prop)));
        let hint = match close {
            Some(n) => format!("; did you mean `{n}`?"),
            None => format!("; it has: {}", names.join(", ")),
        };
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "element `{}` ({}) has no property `{prop}`{hint}",
                element.name(),
                factory(element).unwrap_or_else(|| "?".into())
            ),
        )
    })
}

fn factory(element: &gst::Element) -> Option<String> {
    element.factory().map(|f| f.name().to_string())
}

/// Runs a GStreamer query off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("element access failed: {e}"),
        )
    })?
}

/// `GET /api/pipelines/{name}/elements`: every element, nested bins and its readers' pipelines included.
pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ElementInfo>>, ApiError> {
    let pipelines = running_all(&state, &name)?;
    blocking(move || {
        let mut all: Vec<ElementInfo> = pipelines
            .iter()
            .flat_map(|p| p.iterate_recurse().into_iter().flatten())
            .map(|e| ElementInfo {
                name: e.name().to_string(),
                path: crate::pipeline::element_path(e.upcast_ref()),
                factory: factory(&e),
                state: format!("{:?}", e.current_state()).to_lowercase(),
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Json(all))
    })
    .await
}

/// `GET /api/pipelines/{name}/elements/{element}`: the element and all its properties.
pub async fn show(
    State(state): State<AppState>,
    Path((name, el)): Path<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let pipelines = running_all(&state, &name)?;
    blocking(move || {
        let e = element(&pipelines, &el)?;
        let properties: Vec<PropertyInfo> = e
            .list_properties()
            .iter()
            .map(|p| describe(&e, p))
            .collect();
        Ok(Json(serde_json::json!({
            "name": e.name().as_str(),
            "path": crate::pipeline::element_path(e.upcast_ref()),
            "factory": factory(&e),
            "properties": properties,
        })))
    })
    .await
}

/// `GET /api/pipelines/{name}/elements/{element}/properties/{prop}`.
pub async fn get(
    State(state): State<AppState>,
    Path((name, el, prop)): Path<(String, String, String)>,
) -> Result<Json<PropertyInfo>, ApiError> {
    let pipelines = running_all(&state, &name)?;
    blocking(move || {
        let e = element(&pipelines, &el)?;
        let pspec = property(&e, &prop)?;
        if !pspec.flags().contains(glib::ParamFlags::READABLE) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("property `{prop}` of `{el}` is write-only"),
            ));
        }
        Ok(Json(describe(&e, &pspec)))
    })
    .await
}

/// `PUT /api/pipelines/{name}/elements/{element}/properties/{prop}`: the body is the JSON value
/// (`2000`, `"baseline"`, `true`) or `{"value": ...}`. Replies with the value read back.
pub async fn set(
    State(state): State<AppState>,
    Path((name, el, prop)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<PropertyInfo>, ApiError> {
    let json: Json_ = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON value (e.g. 2000, \"text\", true) or {{\"value\": ...}}: {e}"),
        )
    })?;
    let json = match json {
        Json_::Object(mut o) if o.len() == 1 && o.contains_key("value") => {
            o.remove("value").unwrap_or(Json_::Null)
        }
        other => other,
    };
    let pipelines = running_all(&state, &name)?;
    let (pipeline_name, events) = (name.clone(), state.supervisor.events().clone());
    blocking(move || {
        let e = element(&pipelines, &el)?;
        let pspec = property(&e, &prop)?;
        if prop == "name" || prop == "parent" {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("`{prop}` of `{el}` is fixed while the pipeline runs (the API finds elements by name)"),
            ));
        }
        if !pspec.flags().contains(glib::ParamFlags::WRITABLE)
            || pspec.flags().contains(glib::ParamFlags::CONSTRUCT_ONLY)
        {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "property `{prop}` of `{el}` ({}) is read-only{}",
                    factory(&e).unwrap_or_default(),
                    if pspec.flags().contains(glib::ParamFlags::CONSTRUCT_ONLY) {
                        " once the element exists (construct-only)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let value = json_to_value(&pspec, &json).map_err(|why| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "property `{prop}` of `{el}` takes {}: {why}",
                    type_description(&pspec)
                ),
            )
        })?;
        e.set_property_from_value(&prop, &value);
        let info = describe(&e, &pspec);
        events.publish(crate::events::Event::new(
            "property",
            &pipeline_name,
            serde_json::json!({ "element": el, "property": prop, "value": info.value }),
        ));
        Ok(Json(info))
    })
    .await
}

/// `GET /api/pipelines/{name}/graph.svg`: the running pipeline's graph as SVG.
pub async fn graph_svg(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let pipelines = running_all(&state, &name)?;
    let svg = blocking(move || {
        crate::graph::svg(&graph(&pipelines))
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e))
    })
    .await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// `GET /api/pipelines/{name}/graph.dot`: the same graph as Graphviz DOT.
pub async fn graph_dot(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let pipelines = running_all(&state, &name)?;
    let dot = blocking(move || Ok(graph(&pipelines))).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/vnd.graphviz")],
        dot,
    )
        .into_response())
}

/// `POST /api/pipelines/{name}/eos`: end-of-stream into the running pipeline; it drains and
/// ends as if its source had ended (the restart policy applies).
pub async fn eos(state: &AppState, name: &str) -> Result<(), ApiError> {
    let pipeline = running(state, name)?;
    blocking(move || {
        if pipeline.send_event(gst::event::Eos::new()) {
            Ok(())
        } else {
            Err(ApiError(
                StatusCode::CONFLICT,
                "the pipeline did not accept end-of-stream".into(),
            ))
        }
    })
    .await
}

fn describe(e: &gst::Element, pspec: &glib::ParamSpec) -> PropertyInfo {
    let flags = pspec.flags();
    let readable = flags.contains(glib::ParamFlags::READABLE);
    let value = if readable {
        value_to_json(&e.property_value(pspec.name()))
    } else {
        Json_::Null
    };
    let mutable_in = if flags.contains(gst::PARAM_FLAG_MUTABLE_PLAYING) {
        Some("playing")
    } else if flags.contains(gst::PARAM_FLAG_MUTABLE_PAUSED) {
        Some("paused")
    } else if flags.contains(gst::PARAM_FLAG_MUTABLE_READY) {
        Some("ready")
    } else {
        None
    };
    PropertyInfo {
        name: pspec.name().to_string(),
        kind: type_description(pspec),
        value,
        readable,
        writable: flags.contains(glib::ParamFlags::WRITABLE)
            && !flags.contains(glib::ParamFlags::CONSTRUCT_ONLY),
        mutable_in,
        blurb: pspec.blurb().map(|b| b.to_string()),
    }
}

/// The JSON form of a property value: numbers, booleans and strings as such, enums by nick,
/// anything else in GStreamer's serialized form (caps, flags, fractions), null if it has none.
pub fn value_to_json(v: &glib::Value) -> Json_ {
    use glib::Type;
    let t = v.type_();
    let number = |x: Option<f64>| {
        x.and_then(serde_json::Number::from_f64)
            .map(Json_::Number)
            .unwrap_or(Json_::Null)
    };
    match t {
        Type::BOOL => v.get::<bool>().map(Json_::from).unwrap_or(Json_::Null),
        Type::I32 => v.get::<i32>().map(Json_::from).unwrap_or(Json_::Null),
        Type::U32 => v.get::<u32>().map(Json_::from).unwrap_or(Json_::Null),
        Type::I64 => v.get::<i64>().map(Json_::from).unwrap_or(Json_::Null),
        Type::U64 => v.get::<u64>().map(Json_::from).unwrap_or(Json_::Null),
        Type::I_LONG => v
            .get::<glib::ILong>()
            .map(|x| Json_::from(x.0))
            .unwrap_or(Json_::Null),
        Type::U_LONG => v
            .get::<glib::ULong>()
            .map(|x| Json_::from(x.0))
            .unwrap_or(Json_::Null),
        Type::F32 => number(v.get::<f32>().ok().map(f64::from)),
        Type::F64 => number(v.get::<f64>().ok()),
        // Passwords in URIs, tokens and private keys (the DTLS elements' `pem`) stay out.
        Type::STRING => v
            .get::<Option<String>>()
            .ok()
            .flatten()
            .map(|s| Json_::from(crate::redact::redact(&s)))
            .unwrap_or(Json_::Null),
        _ if t.is_a(Type::ENUM) => glib::EnumValue::from_value(v)
            .map(|(_, ev)| Json_::from(ev.nick()))
            .unwrap_or(Json_::Null),
        // Caps and structures in their text form; other boxed and object values (samples,
        // buffers, elements) have no useful JSON form, and serializing an empty one makes
        // GStreamer complain.
        _ if t == gst::Caps::static_type() => v
            .get::<Option<gst::Caps>>()
            .ok()
            .flatten()
            .map(|c| Json_::from(c.to_string()))
            .unwrap_or(Json_::Null),
        _ if t == gst::Structure::static_type() => v
            .get::<Option<gst::Structure>>()
            .ok()
            .flatten()
            .map(|s| Json_::from(s.to_string()))
            .unwrap_or(Json_::Null),
        _ if t.is_a(Type::BOXED) || t.is_a(Type::OBJECT) || t.is_a(Type::INTERFACE) => Json_::Null,
        _ => v
            .serialize()
            .map(|s| Json_::from(s.as_str()))
            .unwrap_or(Json_::Null),
    }
}

/// Converts JSON to a value of the property's type; range and enum checks included.
pub fn json_to_value(pspec: &glib::ParamSpec, json: &Json_) -> Result<glib::Value, String> {
    let t = pspec.value_type();
    let value = if t == glib::Type::STRING {
        match json {
            Json_::String(s) => s.to_value(),
            Json_::Null => None::<String>.to_value(),
            other => other.to_string().to_value(),
        }
    } else {
        let text = match json {
            Json_::String(s) => s.clone(),
            Json_::Number(n) => n.to_string(),
            Json_::Bool(b) => b.to_string(),
            Json_::Null => return Err("got null".into()),
            other => return Err(format!("got {other}")),
        };
        glib::Value::deserialize_with_pspec(&text, pspec)
            .map_err(|_| format!("`{text}` is not one"))?
    };
    if !pspec.value_is_valid(&value) {
        return Err(format!("{json} is out of range"));
    }
    Ok(value)
}

/// What a property takes, in words: `unsigned integer 1..=2048000`, `enum: a, b`, `caps`, ...
pub fn type_description(pspec: &glib::ParamSpec) -> String {
    macro_rules! range {
        ($t:ty, $what:expr) => {
            if let Some(p) = pspec.downcast_ref::<$t>() {
                return format!("{} {}..={}", $what, p.minimum(), p.maximum());
            }
        };
    }
    range!(glib::ParamSpecInt, "integer");
    range!(glib::ParamSpecUInt, "unsigned integer");
    range!(glib::ParamSpecInt64, "integer");
    range!(glib::ParamSpecUInt64, "unsigned integer");
    range!(glib::ParamSpecLong, "integer");
    range!(glib::ParamSpecULong, "unsigned integer");
    range!(glib::ParamSpecFloat, "number");
    range!(glib::ParamSpecDouble, "number");
    let t = pspec.value_type();
    if t == glib::Type::BOOL {
        return "true or false".into();
    }
    if t == glib::Type::STRING {
        return "a string".into();
    }
    if t.is_a(glib::Type::ENUM)
        && let Some(class) = glib::EnumClass::with_type(t)
    {
        let nicks: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
        return format!("one of: {}", nicks.join(", "));
    }
    if t.is_a(glib::Type::FLAGS)
        && let Some(class) = glib::FlagsClass::with_type(t)
    {
        let nicks: Vec<&str> = class.values().iter().map(|v| v.nick()).collect();
        return format!("flags joined by `+` from: {}", nicks.join(", "));
    }
    format!("a {} in GStreamer's text form", t.name())
}
