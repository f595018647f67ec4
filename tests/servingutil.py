"""What TF Serving does with a request, for tests that cannot run tensorflow_model_server here.

TF Serving's REST API (tensorflow_serving/g3doc/api_rest.md, "row format"): `{"instances": [...]}`
lists one value per example for a signature with a single input; a `{"b64": "..."}` object is a
base64-encoded DT_STRING value. The REST handler turns the body into a PredictRequest, the model
server runs the named signature of the loaded SavedModel on the request's tensors, and the
PredictResponse goes back as `{"predictions": [...]}`, one object per example with one key per
output. These helpers take exactly those steps with tensorflow-serving-api's protos.
"""

import base64

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2


def _value(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value


def rest_to_request(body, signature_name, input_names, model_name="efficientnet"):
    """A PredictRequest from a REST body in row format (one named or single input)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    instances = body["instances"]
    if len(input_names) == 1 and not (isinstance(instances[0], dict)
                                      and set(instances[0]) <= set(input_names)):
        columns = {input_names[0]: [_value(instance) for instance in instances]}
    else:
        columns = {name: [_value(instance[name]) for instance in instances]
                   for name in input_names}
    for name, values in columns.items():
        dtype = tf.string if isinstance(values[0], bytes) else None
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def serve(loaded, request):
    """A PredictResponse: the request's signature of a loaded SavedModel run on its inputs."""
    signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, tensor in signature(**inputs).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
    return response


def response_to_rest(response):
    """The REST reply in row format: {"predictions": [{output: value, ...} per example]}."""
    columns = {name: tf.make_ndarray(proto).tolist() for name, proto in response.outputs.items()}
    count = len(next(iter(columns.values())))

    def jsonable(value):
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, list):
            return [jsonable(item) for item in value]
        return value

    return {"predictions": [{name: jsonable(values[i]) for name, values in columns.items()}
                            for i in range(count)]}
