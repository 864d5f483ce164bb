"""Tokenize and EncodePrompt over gRPC: CLIP's real tokens, the 77-token window, the embeddings."""

import numpy as np
import torch

from services.common.api import pb
from services.common.codecs import tensor_from_proto

ASTRONAUT = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 49407]


def tokenize(stub, prompt):
    return stub.Tokenize(pb.TokenizeRequest(prompt=prompt))


def test_token_ids_are_clips(stub):
    response = tokenize(stub, "A photo of an Astronaut riding a horse")  # CLIP lower-cases
    ids = [token.id for token in response.tokens]
    assert ids[:10] == ASTRONAUT and ids[10:] == [49407] * 67
    assert response.max_length == 77 and response.prompt_token_count == 8 and not response.truncated
    kinds = [token.kind for token in response.tokens]
    assert kinds[0] == pb.TOKEN_KIND_START and kinds[1:9] == [pb.TOKEN_KIND_PROMPT] * 8
    assert kinds[9] == pb.TOKEN_KIND_END and set(kinds[10:]) == {pb.TOKEN_KIND_PADDING}
    assert response.tokens[5].piece == "astronaut</w>" and response.tokens[5].text == "astronaut"


def test_one_word_can_be_several_tokens(stub):
    pieces = [token.text for token in tokenize(stub, "supercalifragilistic").tokens[1:-1] if token.kind == 2]
    assert len(pieces) > 1 and "".join(pieces) == "supercalifragilistic"


def test_truncation_beyond_77_tokens_is_reported(stub):
    response = tokenize(stub, " ".join(["zebra"] * 80) + " at sunset")
    assert response.truncated and response.prompt_token_count == 82
    assert len(response.tokens) == 77 and response.tokens[-1].id == 49407
    assert [t.text for t in response.truncated_tokens] == ["zebra"] * 5 + ["at", "sunset"]
    assert [t.position for t in response.truncated_tokens] == list(range(76, 83))
    assert response.truncated_text == "zebra zebra zebra zebra zebra at sunset"


def test_empty_prompt_is_start_end_and_padding(stub):
    response = tokenize(stub, "")
    assert response.prompt_token_count == 0
    assert [t.id for t in response.tokens[:2]] == [49406, 49407]


def test_embeddings_equal_the_text_encoder_output(stub, pipeline):
    encoding = stub.EncodePrompt(pb.EncodePromptRequest(prompt="a red bicycle")).encoding
    embeddings = tensor_from_proto(encoding.embeddings)
    assert embeddings.shape == (77, 32) and embeddings.dtype == np.float16
    ids = torch.tensor([[t.id for t in encoding.tokens.tokens]], device=pipeline.device)
    with torch.no_grad():
        expected = pipeline.text_encoder(ids)[0][0].float().cpu()
    np.testing.assert_array_equal(embeddings, expected.half().numpy())
    np.testing.assert_allclose(encoding.token_norms, expected.norm(dim=-1).numpy(), rtol=1e-5)


def test_the_same_word_gets_a_different_vector_in_another_prompt(stub):
    """CLIP's text transformer is causal: a position's vector depends on the tokens before it."""

    def vectors(prompt):
        return tensor_from_proto(stub.EncodePrompt(pb.EncodePromptRequest(prompt=prompt)).encoding.embeddings)

    red, blue = vectors("red horse"), vectors("blue horse")
    np.testing.assert_array_equal(red[0], blue[0])  # the start token sees only itself
    assert not np.allclose(red[2], blue[2], atol=1e-3)  # "horse" after "red" is not "horse" after "blue"
