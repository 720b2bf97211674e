-- section: Sparse autoencoders
-- title: Attention SAE: latents by their dominant head
-- chart: bar x=head y=latents series=sae_id
-- note: For each SAE on attn_z, each latent's decoder norm per head as a share of its total; a latent counts for the head with the largest share, when that share is at least one half (the rest are mixed).
with best as (
    select sae_id, feature, arg_max(head, norm_frac) as head, max(norm_frac) as share
    from sae_heads group by sae_id, feature
)
select sae_id, head, count(*) as latents
from best where share >= 0.5
group by sae_id, head
order by sae_id, head
