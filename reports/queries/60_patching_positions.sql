-- section: Causal interventions
-- title: Activation patching (denoising) over layer and position
-- chart: heatmap x=pos y=layer value=effect facet=panel
-- note: Each cell: the corrupted prompt run with one clean activation written in (at that layer and position), as normalised logit difference (patched - corrupted) / (clean - corrupted), averaged over the task's prompts; 1 restores the clean answer. Induction: only position 10 (the word after the first copy of the last token) differs between clean and corrupted.
select model || ' ' || task || ' ' || hook as panel, layer, pos, round(effect, 4) as effect
from patching
where method = 'activation' and mode = 'denoising' and head is null and direction is null
order by panel, layer, pos
