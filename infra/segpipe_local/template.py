"""Read `template.yaml`'s own resource definitions, so the local stack and the tests create
exactly the table, bucket settings and event patterns that AWS gets (they cannot drift)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@dataclass(frozen=True)
class Tag:
    """A CloudFormation intrinsic function (`!Ref X`, `!Sub ...`, `!GetAtt A.B`)."""

    name: str
    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return Tag(suffix, value)


_Loader.add_multi_constructor("!", _construct)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - safe loader subclass
    return data


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Replace `!Ref` tags by the values in `refs` (logical id or pseudo parameter -> value)."""
    if isinstance(value, Tag):
        if value.name == "Ref" and value.value in refs:
            return refs[value.value]
        raise KeyError(f"cannot resolve !{value.name} {value.value!r} locally")
    if isinstance(value, dict):
        return {key: resolve(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, refs) for item in value]
    return value


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def table_definition(template: dict[str, Any], *, table_name: str) -> dict[str, Any]:
    """`create_table` arguments from the one AWS::DynamoDB::Table of the template."""
    (props,) = (body["Properties"] for body in resources(template, "AWS::DynamoDB::Table").values())
    definition: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props["BillingMode"],
    }
    if "GlobalSecondaryIndexes" in props:
        definition["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    return definition


def bucket_properties(template: dict[str, Any]) -> dict[str, Any]:
    (props,) = (body["Properties"] for body in resources(template, "AWS::S3::Bucket").values())
    return dict(props)


@dataclass(frozen=True)
class EventRoute:
    function: str
    handler: str
    rule: str
    pattern: dict[str, Any]


def event_routes(template: dict[str, Any], refs: dict[str, str]) -> list[EventRoute]:
    """Every EventBridgeRule event of every function, with its pattern resolved."""
    routes: list[EventRoute] = []
    for name, body in resources(template, "AWS::Serverless::Function").items():
        props = body["Properties"]
        for rule, event in (props.get("Events") or {}).items():
            if event["Type"] == "EventBridgeRule":
                pattern = resolve(event["Properties"]["Pattern"], refs)
                routes.append(EventRoute(function=name, handler=props["Handler"], rule=rule, pattern=pattern))
    return routes


def function_handlers(template: dict[str, Any]) -> dict[str, str]:
    return {
        name: body["Properties"]["Handler"]
        for name, body in resources(template, "AWS::Serverless::Function").items()
    }
