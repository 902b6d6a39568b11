"""lmms-eval integration: the `explainprune` model (entry point group `lmms_eval.models`), task export
and the scorer x keep-ratio sweep. Importing this package imports neither torch nor lmms-eval's
model code; lmms-eval imports `model` when it builds the model.
"""

MODEL_ID = "explainprune"
MODEL_MODULE = "explainprune.integrations.lmms_eval.model"


def manifests():
    """The entry point's payload: the chat and simple classes of the `explainprune` model."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(
        model_id=MODEL_ID,
        simple_class_path=f"{MODEL_MODULE}.ExplainPruneSimple",
        chat_class_path=f"{MODEL_MODULE}.ExplainPruneChat",
    )
