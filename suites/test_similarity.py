"""Representational similarity: do encoders (and language) arrange the classes alike?

Each encoder's representational dissimilarity matrix (RDM) over classes is the Welch t-distance
between class means of its L2-normalised features; RDMs are compared by the Pearson r of their
upper triangles. Two records per dataset and encoder:

- ``similarity.rsa_reference``: r with the reference encoder, the first ``--encoder``. Gate a
  fine-tune on its parent with ``pytest --encoder=parent.py --encoder=finetune.py`` and a rule
  ``probe = "similarity", metric = "rsa_reference", encoder = "finetune*", value = 0.9``.
- ``similarity.rsa_language``: r with a text model's embeddings of "a photo of {label}."
  (``--visprobe-text-model``, default the offline MiniLM).
- ``similarity.rsa_language_NAME``: under a profile naming ``text_models`` (``paper``: BERT and
  GPT-2 at the class name's token, and an image-text encoder's own ``encode_text`` on ImageNet-val,
  as Devillers et al.), r with each named text model; the details say which text definition.

Every record carries the full correlation matrix in its details; the report draws it as a
heat-map and an average-linkage dendrogram on 1 - r.

``cka.linear_cka`` and ``cka.rbf_cka`` compare the images' similarity structure instead of the
classes': centered kernel alignment (debiased HSIC) of each encoder's features with the
reference encoder's over the same test images, with a bootstrap interval over images.

``layer_cka.linear_cka_embedding`` (only with ``--visprobe-layers``; deselected otherwise) compares
an encoder's own layers: linear CKA between every pair, drawn as a layer × layer heat-map, each
layer's record being its CKA with the encoder's embedding.
"""

import pytest


@pytest.mark.visprobe_probe("similarity")
def test_similarity_between_encoders(visprobe, visprobe_encoders, visprobe_dataset):
    visprobe.run("similarity", visprobe_encoders[0], visprobe_dataset, against="reference")


@pytest.mark.visprobe_probe("similarity")
def test_similarity_to_language(visprobe, visprobe_encoders, visprobe_dataset):
    visprobe.run("similarity", visprobe_encoders[0], visprobe_dataset, against="language")


@pytest.mark.visprobe_probe("cka")
def test_cka_between_encoders(visprobe, visprobe_encoders, visprobe_dataset):
    visprobe.run("cka", visprobe_encoders[0], visprobe_dataset)


@pytest.mark.visprobe_probe("layer_cka")
def test_cka_between_layers(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("layer_cka", visprobe_encoder, visprobe_dataset)
