-- section: Sparse autoencoders
-- title: Every SAE and transcoder: sparsity, dead latents, loss recovered
-- chart: table
-- note: dead: latents active on no held-out token; dense: active on more than 10% of them. Loss recovered, for causal LMs: (CE with the hook point zeroed - CE spliced) / (CE zeroed - CE clean), with the KL of the spliced next-token distribution to the clean one; for encoders, the mean cosine of the final layer's representation, spliced vs clean.
select sae_id, model, hook || coalesce(' -> ' || target_hook, '') as hook, layer, arch, d_sae,
       round(l0, 1) as l0, round(fvu, 4) as fvu, round(dead_frac, 4) as dead_frac, round(dense_frac, 4) as dense_frac,
       round(loss_recovered, 3) as loss_recovered, round(kl, 4) as kl, round(final_cosine, 4) as final_cosine
from sae_runs
order by model, layer, sae_id
