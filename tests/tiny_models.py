"""Tiny randomly initialised models of the real architectures (GPT-2, diffusers pipelines) for tests."""

from __future__ import annotations

from pathlib import Path


def tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide GPT-2 with a byte-level tokenizer (256 byte tokens, no merges, <|endoftext|>),
    saved like a hub repo so `from_pretrained(folder)` loads both."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    GPT2Tokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def tiny_unclip(folder: Path, dim: int = 16, seed: int = 0) -> Path:
    """A Stable unCLIP img2img pipeline (the stable-diffusion-2-1-unclip layout) with every component
    tiny and random, taking `dim`-wide image embeddings; saved like a hub repo."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    torch.manual_seed(seed)
    chars = list(bytes_to_unicode().values())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
                                        bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1))
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, projection_dim=dim, num_hidden_layers=1,
                                                            num_attention_heads=2, intermediate_size=37,
                                                            image_size=32, patch_size=4))
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=(2, 4), class_embed_type="projection",
                                projection_class_embeddings_input_dim=2 * dim)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=vision,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"), tokenizer=tokenizer,
        text_encoder=text, unet=unet, vae=vae,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1))
    pipe.save_pretrained(folder)
    return folder


def tiny_kandinsky(folder: Path, dim: int = 16, seed: int = 0) -> Path:
    """A Kandinsky 2.2 decoder pipeline (unet + MoVQ + scheduler) tiny and random, taking `dim`-wide
    image embeddings; saved like a hub repo."""
    import torch
    from diffusers import DDIMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(in_channels=4, out_channels=8, addition_embed_type="image", layers_per_block=1,
                                down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
                                up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
                                mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64),
                                encoder_hid_dim=dim, encoder_hid_dim_type="image_proj", cross_attention_dim=32,
                                attention_head_dim=4, resnet_time_scale_shift="scale_shift", class_embed_type=None)
    movq = VQModel(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                   in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
                   num_vq_embeddings=12, out_channels=3, up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"),
                   vq_embed_dim=4)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")
    KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(folder)
    return folder
