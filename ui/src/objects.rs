//! The object browser: a tree database → schema → table → its indexes, TOAST and partitions,
//! the biggest objects, every object paged, and one object's growth.

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup};
use pgmon_contract::query::{ObjectGrowthReply, ObjectSize, ObjectsReply};

use crate::components::{bytes, range_picker, target_header, time, TargetTab};

/// The kinds offered in the filter, with their label.
pub const OBJECT_KINDS: &[(&str, &str)] = &[
    ("table", "table"),
    ("partitioned_table", "partitioned table"),
    ("index", "index"),
    ("partitioned_index", "partitioned index"),
    ("toast", "TOAST"),
    ("materialized_view", "materialized view"),
];

/// The filters of the tree and of the full list.
#[derive(Default)]
pub struct ObjectFilter {
    pub database: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
}

impl ObjectFilter {
    fn query(&self) -> String {
        let mut pairs = Vec::new();
        for (key, value) in [("database", &self.database), ("kind", &self.kind), ("name", &self.name)] {
            if let Some(value) = value {
                pairs.push(format!("{key}={}", percent_encode(value)));
            }
        }
        pairs.join("&")
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The address of an object's page.
pub fn object_link(target: &str, object: &ObjectSize) -> String {
    relation_link(target, &object.database, &object.schema_name, &object.name)
}

/// The page of the relation `database`.`schema`.`name` of `target`.
pub fn relation_link(target: &str, database: &str, schema: &str, name: &str) -> String {
    format!(
        "/targets/{target}/objects/{}/{}/{}",
        percent_encode(database),
        percent_encode(schema),
        percent_encode(name)
    )
}

fn kind_label(kind: &str) -> &str {
    OBJECT_KINDS
        .iter()
        .find(|(value, _)| *value == kind)
        .map_or(kind, |(_, label)| label)
}

fn filter_form(target: &str, action: &str, filter: &ObjectFilter, databases: &[String]) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" {
            label { "Name contains " input type="search" name="name" value=[filter.name.as_deref()] placeholder="orders"; }
            label { " Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for (value, label) in OBJECT_KINDS {
                        option value=(value) selected[filter.kind.as_deref() == Some(*value)] { (label) }
                    }
                }
            }
            label { " Database "
                select name="database" {
                    option value="" { "any" }
                    @for database in databases {
                        option value=(database) selected[filter.database.as_deref() == Some(database.as_str())] { (database) }
                    }
                }
            }
            " " button type="submit" { "Filter" }
            " " a href={ "/targets/" (target) "/objects" } { "Clear" }
        }
    }
}

pub struct ObjectsView<'a> {
    pub target: &'a str,
    pub filter: &'a ObjectFilter,
    /// Every database of the newest snapshot, for the filter.
    pub databases: &'a [String],
    /// The matching objects, ordered by name.
    pub matching: &'a ObjectsReply,
    /// The ten biggest objects (unfiltered).
    pub biggest: &'a [ObjectSize],
}

/// Marks an object whose sizes are not from the round shown: why, and since when.
fn stale_marker(object: &ObjectSize) -> Markup {
    html! {
        @if let Some(reason) = &object.size_stale_reason {
            @let measured = object.size_measured_at_us.map_or_else(|| "never measured yet".to_owned(), |at| format!("sizes as of {} UTC", time(at)));
            " " span.stale title={ (reason) "; " (measured) } { "stale: " (reason) " (" (measured) ")" }
        }
    }
}

/// Says which sizes of a round are stale and why: objects that were locked, databases not read.
fn stale_summary(reply: &ObjectsReply) -> Markup {
    html! {
        @for skipped in &reply.skipped_databases {
            p.notice { "Database " strong { (skipped.database) } " could not be read in this round (" (skipped.reason) "): its objects show their last measured sizes." }
        }
        @if reply.stale_objects > 0 {
            p.notice { (reply.stale_objects) " of these objects could not be measured in this round; they show their last measured sizes and are marked stale." }
        }
    }
}

fn object_row(target: &str, object: &ObjectSize, depth: usize) -> Markup {
    html! {
        tr class={ "depth-" (depth) } {
            td { a href=(object_link(target, object)) { (object.name) } (stale_marker(object)) }
            td { (kind_label(&object.kind)) }
            td.number { (bytes(object.total_bytes)) }
            td.number { (bytes(object.table_bytes)) }
            td.number { (bytes(object.index_bytes)) }
            td.number { (bytes(object.toast_bytes)) }
            td.number { @if let Some(rows) = object.row_estimate { (rows) } @else { "–" } }
        }
    }
}

const TREE_HEADER: [&str; 7] = ["Name", "Kind", "Total", "Table", "Indexes", "TOAST", "Rows (estimate)"];

/// Objects grouped into database → schema → root objects with their children under them.
fn tree(target: &str, objects: &[ObjectSize]) -> Markup {
    let mut children: HashMap<(&str, &str), Vec<&ObjectSize>> = HashMap::new();
    let mut roots: BTreeMap<&str, BTreeMap<&str, Vec<&ObjectSize>>> = BTreeMap::new();
    let listed: std::collections::HashSet<(String, String)> = objects
        .iter()
        .map(|object| (object.database.clone(), format!("{}.{}", object.schema_name, object.name)))
        .collect();
    for object in objects {
        match &object.parent {
            Some(parent) if listed.contains(&(object.database.clone(), parent.clone())) => {
                children
                    .entry((object.database.as_str(), parent.as_str()))
                    .or_default()
                    .push(object);
            }
            _ => roots
                .entry(object.database.as_str())
                .or_default()
                .entry(object.schema_name.as_str())
                .or_default()
                .push(object),
        }
    }
    fn rows<'a>(
        target: &str,
        object: &'a ObjectSize,
        depth: usize,
        children: &HashMap<(&str, &str), Vec<&'a ObjectSize>>,
        out: &mut Vec<Markup>,
    ) {
        out.push(object_row(target, object, depth));
        let key = format!("{}.{}", object.schema_name, object.name);
        if let Some(below) = children.get(&(object.database.as_str(), key.as_str())) {
            for child in below {
                rows(target, child, depth + 1, children, out);
            }
        }
    }
    html! {
        @for (database, schemas) in &roots {
            details.database open {
                summary { "Database " strong { (database) } }
                @for (schema, objects) in schemas {
                    details.schema open {
                        summary { "Schema " strong { (schema) } " · " (objects.len()) " objects" }
                        table.data.tree {
                            thead { tr { @for heading in TREE_HEADER { th { (heading) } } } }
                            tbody {
                                @for object in objects {
                                    @let mut out = Vec::new();
                                    ({ rows(target, object, 0, &children, &mut out); html! { @for row in out { (row) } } })
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The biggest objects as horizontal bars (plain HTML, no script) and a table.
fn biggest_chart(target: &str, biggest: &[ObjectSize]) -> Markup {
    let largest = biggest.iter().map(|object| object.total_bytes).max().unwrap_or(1).max(1);
    html! {
        div.bars {
            @for object in biggest {
                div.bar-row {
                    a.bar-label href=(object_link(target, object)) { (object.database) "." (object.schema_name) "." (object.name) }
                    meter.bar min="0" max=(largest) value=(object.total_bytes) {}
                    span.bar-value { (bytes(object.total_bytes)) }
                }
            }
        }
    }
}

pub fn objects_page(view: &ObjectsView<'_>) -> Markup {
    let target = view.target;
    let matching = view.matching;
    html! {
        (target_header(target, TargetTab::Objects, "Objects"))
        @match matching.collected_at_us {
            None => p.empty { "No object sizes have been collected for this target yet (every 5 minutes by default)." },
            Some(at) => {
                p.lead {
                    "Sizes from " (time(at)) " UTC · tables with their indexes and TOAST: " (bytes(matching.bytes_of_tables))
                    " · " a href={ "/targets/" (target) "/objects/all" } { "all objects, sortable" }
                }
                h2 { "Biggest objects" }
                (biggest_chart(target, view.biggest))
                h2 { "Browse" }
                (filter_form(target, &format!("/targets/{target}/objects"), view.filter, view.databases))
                (stale_summary(matching))
                @if matching.objects.is_empty() {
                    p.empty { "No object matches these filters." }
                } @else {
                    @if (matching.objects.len() as i64) < matching.total {
                        p.hint { "Showing " (matching.objects.len()) " of " (matching.total) " matching objects: narrow the filter, or see "
                            a href={ "/targets/" (target) "/objects/all?" (view.filter.query()) } { "all of them paged" } "." }
                    }
                    (tree(target, &matching.objects))
                }
            }
        }
    }
}

/// The columns the full list can be sorted by, with their label.
pub const OBJECT_ORDERS: &[(&str, &str)] = &[
    ("total_bytes", "Total"),
    ("table_bytes", "Table"),
    ("index_bytes", "Indexes"),
    ("name", "Name"),
];

pub struct AllObjectsView<'a> {
    pub target: &'a str,
    pub filter: &'a ObjectFilter,
    pub databases: &'a [String],
    pub order_by: &'a str,
    pub page: u32,
    pub page_size: u32,
    pub reply: &'a ObjectsReply,
}

pub fn all_objects_page(view: &AllObjectsView<'_>) -> Markup {
    let target = view.target;
    let base = format!("/targets/{target}/objects/all?{}", view.filter.query());
    let link = |order: &str, page: u32| format!("{base}&order_by={order}&page={page}");
    let pages = (view.reply.total as u32).div_ceil(view.page_size).max(1);
    html! {
        (target_header(target, TargetTab::Objects, "All objects"))
        (filter_form(target, &format!("/targets/{target}/objects/all"), view.filter, view.databases))
        p.lead { (view.reply.total) " objects · page " (view.page) " of " (pages) }
        (stale_summary(view.reply))
        table.data.all-objects {
            thead { tr {
                th { "Database" } th { "Schema" }
                @for (order, label) in OBJECT_ORDERS {
                    th { a.selected[*order == view.order_by] href=(link(order, 1)) { (label) } }
                }
                th { "Kind" } th { "TOAST" } th { "Part of" }
            } }
            tbody {
                @for object in &view.reply.objects {
                    tr {
                        td { (object.database) } td { (object.schema_name) }
                        td.number { (bytes(object.total_bytes)) } td.number { (bytes(object.table_bytes)) } td.number { (bytes(object.index_bytes)) }
                        td { a href=(object_link(target, object)) { (object.name) } (stale_marker(object)) }
                        td { (kind_label(&object.kind)) } td.number { (bytes(object.toast_bytes)) }
                        td { (object.parent.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        nav.pager {
            @if view.page > 1 { a href=(link(view.order_by, view.page - 1)) { "← previous" } }
            " "
            @if view.page < pages { a href=(link(view.order_by, view.page + 1)) { "next →" } }
        }
    }
}

pub struct ObjectView<'a> {
    pub target: &'a str,
    pub database: &'a str,
    pub schema_name: &'a str,
    pub name: &'a str,
    pub range: &'a str,
    pub growth: &'a ObjectGrowthReply,
}

pub fn object_page(view: &ObjectView<'_>) -> Markup {
    let (target, database, schema, name) = (view.target, view.database, view.schema_name, view.name);
    let base = format!(
        "/targets/{target}/objects/{}/{}/{}",
        percent_encode(database),
        percent_encode(schema),
        percent_encode(name)
    );
    let api = format!(
        "/api/v1/targets/{target}/objects/growth?database={}&schema={}&name={}&range={}",
        percent_encode(database),
        percent_encode(schema),
        percent_encode(name),
        view.range
    );
    html! {
        (target_header(target, TargetTab::Objects, &format!("{database}.{schema}.{name}")))
        div.controls { (range_picker(view.range, |range| format!("{base}?range={range}"))) }
        @match (view.growth.points.last(), view.growth.growth_bytes_per_day) {
            (None, _) => p.empty { "This object was not in any objects snapshot of this range." },
            (Some(latest), growth) => {
                p.lead {
                    "Now " (bytes(latest.total_bytes)) " (table " (bytes(latest.table_bytes)) ", indexes " (bytes(latest.index_bytes))
                    ", TOAST " (bytes(latest.toast_bytes)) ")"
                    @if let Some(per_day) = growth { " · growing " (bytes(per_day as i64)) " per day" }
                }
                div.chart #growth-chart data-growth-url=(api) { p.loading { "Loading…" } }
            }
        }
    }
}
