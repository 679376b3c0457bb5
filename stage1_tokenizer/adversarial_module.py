"""A tokenizer trained as a VQGAN: the reconstruction objective (with LPIPS) plus a PatchGAN discriminator with its
own optimizer, switched on after ``disc_start`` steps, its term balanced by VQGAN's adaptive weight.

One backward pass per batch serves both players: the discriminator judges the generator's images with its weights
frozen (so the generator's term sends it no gradient) and judges real and detached images for its own loss (so its
loss sends the generator none). Two backward passes on one forward would trip DDP's gradient reducer. The
discriminator's optimizer steps outside Lightning's step counter, so ``global_step``, ``max_steps`` and every
schedule count batches, as without a discriminator.
"""

from __future__ import annotations

import torch

from pipeline.core.errors import VqgenError

from .discriminator import LeCam, PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from .lightning_module import TokenizerModule
from .losses import loss_image


class AdversarialTokenizerModule(TokenizerModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.train_config.trainer.get("accumulate_grad_batches", 1) > 1:
            raise VqgenError("tokenizer.train.accumulate_grad_batches must be 1 with a discriminator "
                             "(tokenizer.loss.adversarial_weight > 0): raise batch_size instead")
        self.automatic_optimization = False
        c = self.loss_config
        if self.config.image_size < 3 * 2**c.disc_layers:  # each layer halves; the two last 4x4 convs take 2 more
            deepest = max(0, (self.config.image_size // 3).bit_length() - 1)
            raise VqgenError(f"tokenizer.loss.disc_layers {c.disc_layers} is too deep for {self.config.image_size}x"
                             f"{self.config.image_size} images: use at most {deepest}")
        self.discriminator = PatchDiscriminator(self.config.in_channels, c.disc_channels, c.disc_layers, c.disc_norm)
        self.lecam = LeCam(c.lecam_decay) if c.lecam_weight > 0 else None
        self.disc_start = c.disc_start_steps

    def on_fit_start(self) -> None:
        super().on_fit_start()
        c = self.loss_config
        steps = self.total_steps()
        if not c.disc_start_steps:
            if steps is None and c.disc_start_fraction > 0:
                raise VqgenError("tokenizer.loss.disc_start_fraction needs a run with an end (max_epochs or "
                                 "max_steps); give disc_start_steps instead")
            self.disc_start = round(c.disc_start_fraction * (steps or 0))

    def configure_optimizers(self):
        generator = super().configure_optimizers()
        lr = self.loss_config.disc_lr or self.train_config.lr
        disc = torch.optim.AdamW(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.9),  # taming's betas
                                 weight_decay=self.train_config.weight_decay)
        return [generator["optimizer"], disc], [generator["lr_scheduler"]]

    def discriminator_active(self) -> bool:
        return self.global_step >= self.disc_start

    def training_step(self, batch, batch_idx):
        c = self.loss_config
        opt_g, opt_d = self.optimizers()
        images = self._images(batch)
        output, quant, objective, terms = self._common_step(images)
        loss = objective + quant.loss
        active = self.discriminator_active()
        # Under DDP every parameter needs a gradient in every step: before the start the terms run, weighted 0.
        use_disc = active or self.trainer.world_size > 1
        if use_disc:
            fake_images = loss_image(output, self.config.recon_loss, self.config.bounded_output)
            self.discriminator.requires_grad_(False)
            g_loss = generator_loss(self.discriminator(fake_images), c.adversarial_loss)
            self.discriminator.requires_grad_(True)
            weight = torch.ones((), device=images.device)
            if c.adaptive_weight and active:
                weight = adaptive_weight(objective, g_loss, self.model.last_layer())
            factor = c.adversarial_weight * float(active)
            logits_real = self.discriminator(images)
            logits_fake = self.discriminator(fake_images.detach())
            d_loss = discriminator_loss(logits_real, logits_fake, c.adversarial_loss)
            if self.lecam is not None:
                lecam = self.lecam(logits_real, logits_fake)
                d_loss = d_loss + c.lecam_weight * lecam
                terms["lecam"] = lecam
            loss = loss + factor * weight * g_loss
            terms.update(g_adversarial=g_loss, adaptive_weight=weight, d_loss=d_loss,
                         logits_real=logits_real.mean(), logits_fake=logits_fake.mean())
            total = loss + float(active) * d_loss
        else:
            total = loss
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(total)
        clip = self.train_config.trainer.get("gradient_clip_val")  # kept from the Trainer, which cannot clip here
        if clip:
            self.clip_gradients(opt_g, gradient_clip_val=clip)
        opt_g.step()
        self.update_average()
        if active:
            opt_d.optimizer.step()  # the raw optimizer: Lightning's wrapper would count a second training step
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self._log_terms(loss, quant, terms)
        return loss


def training_module(config, train_config, loss_config) -> TokenizerModule:
    """The Lightning module for these options: with a discriminator when the adversarial weight is positive."""
    module_class = AdversarialTokenizerModule if loss_config.adversarial else TokenizerModule
    return module_class(config, train_config, loss_config)
