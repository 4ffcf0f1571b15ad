"""The endpoint's preprocessor (stepml.preprocessor_script) through its script-mode hooks, and its
model artifact (stepml.preprocessor): raw rows in, the training rows' encoding out."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from stepml import preprocessor, preprocessor_script

ENCODING = {
    "features": [
        {"name": "age", "type": "numeric"},
        {"name": "income", "type": "numeric"},
        {"name": "plan", "type": "categorical"},
        {"name": "region", "type": "categorical"},
    ],
    "categories": {"plan": {"__missing__": 0, "basic": 1, "pro": 2}, "region": {"north": 0, "south": 1}},
    "missing_category": "__missing__",
    "medians": {"age": 41.0, "income": 5000.5},
    "number_pattern": r"^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$",
}


@pytest.fixture
def model(tmp_path):
    (tmp_path / "encoding.json").write_text(json.dumps(ENCODING))
    return preprocessor_script.model_fn(str(tmp_path))


def serve(model, body: bytes, content_type: str = "text/csv", accept: str = "text/csv"):
    """One request through the hooks, as the container's transformer calls them."""
    data = preprocessor_script.input_fn(body, content_type)
    return preprocessor_script.output_fn(preprocessor_script.predict_fn(data, model), accept)


def test_raw_rows_are_encoded_as_the_job_encoded_the_training_rows(model):
    body, content_type = serve(model, b"52,7000.25,pro,south\n 30 ,1e3, basic ,north\n")
    assert content_type == "text/csv"
    assert body.splitlines() == ["52.0,7000.25,2,1", "30.0,1000.0,1,0"]


def test_blanks_are_imputed_as_in_training(model):
    body, _ = serve(model, b",,,south\n")
    # A missing number is the training median; a missing category is __missing__'s code.
    assert body.splitlines() == ["41.0,5000.5,0,1"]


def test_an_unknown_category_has_no_code_and_reaches_xgboost_as_missing(model):
    body, _ = serve(model, b"52,7000,enterprise,\n")
    # region had no missing value in training: a blank has no code there either.
    assert body.splitlines() == ["52.0,7000.0,,"]


def test_quoted_values_are_read_as_csv(model):
    body, _ = serve(model, b'52,7000,"pro",south\r\n')
    assert body.splitlines() == ["52.0,7000.0,2,1"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (
            b"52,7000,pro\n",
            "text/csv",
            400,
            "row 1 has 3 column(s), expected 4: the dataset's features in this order, without the label: "
            "age, income, plan, region",
        ),
        (
            b"52,7000,pro,south\n1,2,basic,north,yes\n",
            "text/csv",
            400,
            "row 2 has 5 column(s), expected 4",
        ),
        (b"abc,7000,pro,south\n", "text/csv", 400, "row 1, column 1 (age): 'abc' is not a number (numeric feature)"),
        (b"52,NaN,pro,south\n", "text/csv", 400, "row 1, column 2 (income): 'NaN' is not a number"),
        (b"52,1e999,pro,south\n", "text/csv", 400, "row 1, column 2 (income): '1e999' is not a number"),
        (
            b"52,7000,pro,south\n52,7000,pro,south\n52,7000,pro, \n52,abc,pro,south\n",
            "text/csv",
            400,
            "row 4, column 2 (income): 'abc' is not a number",
        ),
        (b"\n\n", "text/csv", 400, "the request holds no rows"),
        (b"\xff\xfe", "text/csv", 400, "the request is not UTF-8 text"),
        (b'{"age": 52}', "application/json", 415, "Content-Type application/json is not supported: send text/csv rows"),
    ],
)
def test_a_request_that_cannot_be_read_is_a_4xx_naming_the_problem(model, body, content_type, status, message):
    response = serve(model, body, content_type)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_repeated_cells_encode_as_the_first_time_also_past_the_remembered_cells(model, monkeypatch):
    monkeypatch.setattr(preprocessor_script, "_REMEMBERED_CELLS", 2)
    rows = b"52,7000,pro,south\n 52,7000 ,pro,\n52,8000,basic,south\n52,7000,pro,south\n52,7000,,south\n"
    fresh = preprocessor_script.Encoding(ENCODING)

    body, _ = serve(fresh, rows)

    expected = [
        ",".join(
            model.encode_cell(*feature, cell, 1, 1)
            for feature, cell in zip(model.features, line.split(","), strict=True)
        )
        for line in rows.decode().splitlines()
    ]
    assert body.splitlines() == expected
    assert body.splitlines()[0] == body.splitlines()[3] == "52.0,7000.0,2,1"


def test_only_csv_is_answered(model):
    response = serve(model, b"52,7000,pro,south\n", accept="application/json")
    assert response.status_code == 406
    assert (
        response.get_data(as_text=True) == "Accept application/json is not supported: the preprocessor answers text/csv"
    )


def test_the_archive_holds_the_encoding_and_the_script_and_is_reproducible():
    encoding = json.dumps(ENCODING).encode()
    archive = preprocessor.build_archive(encoding)
    assert archive == preprocessor.build_archive(encoding), "the same encoding packs to the same bytes"
    with tarfile.open(fileobj=io.BytesIO(archive)) as members:
        assert members.getnames() == ["encoding.json", "code/inference.py"]
        assert members.extractfile("encoding.json").read() == encoding
        assert members.extractfile("code/inference.py").read() == preprocessor.SCRIPT.read_bytes()
    with pytest.raises(preprocessor.PreprocessorError, match=r"encoding\.json is not JSON"):
        preprocessor.build_archive(b"{not json")


def test_the_container_definition_serves_the_script_from_the_model_data():
    container = preprocessor.container("img", "s3://b/processed/x/preprocessor/model.tar.gz")
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
    }
