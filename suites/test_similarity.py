"""Representational similarity: do encoders (and language) arrange the classes alike?

Each encoder's representational dissimilarity matrix (RDM) over classes is the Welch t-distance
between class means of its L2-normalised features; RDMs are compared by the Pearson r of their
upper triangles. Two records per dataset and encoder:

- ``similarity.rsa_reference``: r with the reference encoder, the first ``--encoder``. Gate a
  fine-tune on its parent with ``pytest --encoder=parent.py --encoder=finetune.py`` and a rule
  ``probe = "similarity", metric = "rsa_reference", encoder = "finetune*", value = 0.9``.
- ``similarity.rsa_language``: r with a text model's embeddings of "a photo of {label}."
  (``--visprobe-text-model``, default the offline MiniLM).

Every record carries the full correlation matrix in its details; the report draws it as a
heat-map and an average-linkage dendrogram on 1 - r.
"""

import numpy as np
import pytest

from pytest_visprobe.probes.rsa import correlation_matrix, euclidean_rdm, welch_rdm
from pytest_visprobe.results import Metric
from pytest_visprobe.text_embeddings import TextModelUnavailable, embed_labels


def encoder_rdms(visprobe, encoders, dataset):
    """Welch-t RDM of every encoder on the profile's split, keyed by encoder name."""
    split = visprobe.profile.similarity.split
    labels = dataset.split(split).labels
    counts = np.bincount(labels, minlength=len(dataset.class_names))
    if (counts == 0).any():
        missing = [dataset.class_names[i] for i in np.flatnonzero(counts == 0)]
        pytest.skip(f"RSA needs every class in the {split} split, but {dataset.name} has no "
                    f"{', '.join(map(repr, missing[:5]))} image there; raise --visprobe-limit or pick "
                    f"another dataset.")
    return {
        encoder.name: welch_rdm(visprobe.features(encoder, dataset, split).numpy(), labels,
                                n_classes=len(dataset.class_names))
        for encoder in encoders
    }


def check_each(visprobe, metrics, dataset):
    """Record every encoder's metric, then fail once with all violations."""
    __tracebackhide__ = True
    failures = []
    for encoder, metric in metrics:
        try:
            visprobe.check(metric, encoder=encoder, dataset=dataset)
        except pytest.fail.Exception as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


@pytest.mark.visprobe_datasets("similarity")
def test_similarity_between_encoders(visprobe, visprobe_encoders, visprobe_dataset):
    visprobe.require(visprobe_dataset, "label")
    if len(visprobe_encoders) < 2:
        pytest.skip("encoder-to-encoder RSA needs at least two --encoder options (the first is the reference)")
    names, corr = correlation_matrix(encoder_rdms(visprobe, visprobe_encoders, visprobe_dataset))
    details = {"reference": names[0], "names": names, "matrix": corr.round(6).tolist(),
               "split": visprobe.profile.similarity.split}
    check_each(visprobe, [
        (encoder, Metric("similarity", "rsa_reference", float(corr[i, 0]), details=details))
        for i, encoder in enumerate(visprobe_encoders) if i > 0
    ], visprobe_dataset)


@pytest.mark.visprobe_datasets("similarity")
def test_similarity_to_language(visprobe, visprobe_encoders, visprobe_dataset, visprobe_text_model):
    visprobe.require(visprobe_dataset, "label")
    prompt = visprobe.profile.similarity.prompt
    try:
        text = embed_labels(visprobe_dataset.class_names, visprobe_text_model, prompt)
    except TextModelUnavailable as exc:
        pytest.skip(f"text model {visprobe_text_model!r} unavailable: {exc}")
    rdms = encoder_rdms(visprobe, visprobe_encoders, visprobe_dataset)
    language = f"text:{visprobe_text_model}"
    rdms[language] = euclidean_rdm(text)
    names, corr = correlation_matrix(rdms)
    details = {"text_model": visprobe_text_model, "prompt": prompt, "names": names,
               "matrix": corr.round(6).tolist(), "split": visprobe.profile.similarity.split}
    check_each(visprobe, [
        (encoder, Metric("similarity", "rsa_language", float(corr[i, -1]), details=details))
        for i, encoder in enumerate(visprobe_encoders)
    ], visprobe_dataset)
