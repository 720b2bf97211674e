-- section: Sparse autoencoders
-- title: Held-out FVU against L0, per architecture
-- chart: line x=l0 y=fvu series=arch
-- note: Every trained SAE and transcoder: fraction of variance unexplained on held-out documents (sum of squared errors over the sum of squared deviations from the evaluation mean) against the mean number of active latents per token. Lower and further left is better.
select arch, sae_id, round(l0, 2) as l0, round(fvu, 4) as fvu
from sae_runs
order by arch, l0
